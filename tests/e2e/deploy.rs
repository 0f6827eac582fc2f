//! The deployment files (`deploy/`): every YAML file parses, and the
//! references between them hold — kustomize resources exist, every binary a
//! container runs is one the Dockerfile installs, ports agree between
//! `--listen`, container ports, probes, Services and the NetworkPolicy, the
//! ConfigMap and Secret a workload reads are the ones defined, every
//! `REFNET_...` variable set anywhere is one refnet reads, and the collector's
//! pipelines name components it defines.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use yaml_serde::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every document of a YAML file, merge keys (`<<:`) applied.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{}: merge keys: {e}", path.display()));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

fn seq<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

/// The `REFNET_...` variables refnet reads: its configuration keys, plus
/// those read outside the configuration file.
fn known_variables() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = refnet_core::config::ENV_KEYS
        .iter()
        .map(|k| format!("REFNET_{}", k.replace('.', "__").to_ascii_uppercase()))
        .collect();
    known.insert("REFNET_CONFIG".into()); // the configuration file, read by the binaries' flags
    known
}

/// Variables the deploy files set ahead of the code that reads them. Each is
/// listed in the README as not read yet; remove it here when it is.
const NOT_READ_YET: &[&str] = &[];

fn check_variable(file: &str, name: &str, known: &BTreeSet<String>) {
    if name.starts_with("REFNET_") {
        assert!(
            known.contains(name) || NOT_READ_YET.contains(&name),
            "{file} sets {name}, which refnet does not read (typo?)"
        );
    }
}

/// The binaries the container image installs.
fn image_binaries() -> BTreeSet<String> {
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    [
        "refnet",
        "refnet-intake",
        "refnet-routing",
        "refnet-protection",
        "refnet-statistics",
        "refnet-gateway",
    ]
    .iter()
    .filter(|b| dockerfile.contains(&format!("target/release/{b}")))
    .map(|b| (*b).to_owned())
    .collect()
}

/// What a container runs: `refnet service NAME ...` is NAME, `refnet VERB`
/// is VERB.
fn role(command: &[Value]) -> &str {
    let word = |i: usize| command.get(i).and_then(Value::as_str).unwrap_or_default();
    if word(1) == "service" {
        word(2)
    } else {
        word(1)
    }
}

/// The port of a probe's `refnet health --server https://localhost:PORT`.
fn probe_port(command: &[Value]) -> Option<u16> {
    let args: Vec<&str> = command.iter().filter_map(Value::as_str).collect();
    args.iter()
        .position(|a| *a == "--server")
        .and_then(|i| args.get(i + 1))
        .and_then(|url| url.rsplit(':').next())
        .and_then(|p| p.parse().ok())
}

fn listen_port(command: &[Value]) -> Option<u16> {
    let args: Vec<&str> = command.iter().filter_map(Value::as_str).collect();
    args.iter()
        .position(|a| *a == "--listen")
        .and_then(|i| args.get(i + 1))
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
}

#[test]
fn deployment_files_parse_and_agree() {
    let dir = deploy_dir();
    let k8s = dir.join("k8s");
    let known = known_variables();
    let binaries = image_binaries();
    assert_eq!(
        binaries,
        BTreeSet::from(["refnet".to_owned()]),
        "the image ships the one binary"
    );

    // Every YAML file parses.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&k8s)
        .expect("k8s dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.push(dir.join("compose.yaml"));
    files.push(dir.join("otel-collector.yaml"));
    for file in &files {
        if file.extension().is_some_and(|e| e == "yaml") {
            assert!(!documents(file).is_empty(), "{} is empty", file.display());
        }
    }

    // Kubernetes: the kustomization's resources and the objects they hold.
    let kustomization = &documents(&k8s.join("kustomization.yaml"))[0];
    let image_name = seq(kustomization, "images")
        .first()
        .and_then(|i| str_at(i, &["name"]))
        .expect("an image to retarget")
        .to_owned();
    let mut objects = Vec::new();
    for resource in seq(kustomization, "resources") {
        let name = resource.as_str().expect("resource path");
        let path = k8s.join(name);
        assert!(
            path.exists(),
            "kustomization names {name}, which is missing"
        );
        objects.extend(documents(&path));
    }
    let names_of = |kind: &str| -> BTreeSet<String> {
        objects
            .iter()
            .filter(|o| str_at(o, &["kind"]) == Some(kind))
            .filter_map(|o| str_at(o, &["metadata", "name"]).map(str::to_owned))
            .collect()
    };
    let mut config_maps = names_of("ConfigMap");
    // Generated ConfigMaps: their files exist, are valid, and (as shipped)
    // are the policies compiled into refnet.
    for generator in seq(kustomization, "configMapGenerator") {
        let cm = str_at(generator, &["name"]).expect("generator name");
        config_maps.insert(cm.to_owned());
        for file in seq(generator, "files") {
            let file = file.as_str().expect("file");
            let (_key, path) = file.split_once('=').unwrap_or((file, file));
            let path = k8s.join(path);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{cm} names {}: {e}", path.display()));
            match cm {
                "refnet-policy" => {
                    refnet_core::policy::Policy::load(&path).expect("a valid policy");
                    assert!(
                        text == refnet_core::policy::DEFAULT_POLICY,
                        "{cm}: {} differs from services/core/policy/redaction.toml",
                        path.display()
                    );
                }
                "refnet-rules" => {
                    refnet_routing::rules::RuleSet::load(&path).expect("valid rules");
                    assert!(
                        text == refnet_routing::rules::DEFAULT_RULES,
                        "{cm}: {} differs from services/routing/rules/default.toml",
                        path.display()
                    );
                }
                "refnet-agencies" => {
                    assert!(
                        !refnet_core::agencies::parse_file(&path)
                            .expect("a valid agency file")
                            .is_empty(),
                        "{cm}: no agency"
                    );
                }
                other => panic!("unexpected generated ConfigMap {other}"),
            }
        }
    }
    // Files the configuration names, by variable.
    let configured_files: Vec<(String, String)> = objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some("ConfigMap"))
        .flat_map(|cm| {
            cm["data"]
                .as_mapping()
                .map(|m| m.iter().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
        .filter(|(k, _)| k.ends_with("_FILE"))
        .collect();
    let secret = &documents(&k8s.join("secret.example.yaml"))[0];
    let secret_name = str_at(secret, &["metadata", "name"]).expect("secret name");
    for (key, _) in secret
        .get("stringData")
        .and_then(Value::as_mapping)
        .expect("secret keys")
    {
        check_variable("secret.example.yaml", key.as_str().expect("key"), &known);
    }
    for cm in objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some("ConfigMap"))
    {
        for (key, _) in cm.get("data").and_then(Value::as_mapping).expect("data") {
            check_variable("configmap.yaml", key.as_str().expect("key"), &known);
        }
    }

    // The TLS Secrets the workloads mount are the ones the cert-manager
    // example issues.
    let tls_secrets: BTreeSet<String> = documents(&k8s.join("cert-manager.example.yaml"))
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some("Certificate"))
        .filter_map(|o| str_at(o, &["spec", "secretName"]).map(str::to_owned))
        .collect();
    let ingress_ports: BTreeSet<u64> = objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some("NetworkPolicy"))
        .flat_map(|np| seq(&np["spec"], "ingress").to_vec())
        .flat_map(|rule| seq(&rule, "ports").to_vec())
        .filter_map(|p| p.get("port").and_then(Value::as_u64))
        .collect();
    let services: Vec<&Value> = objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some("Service"))
        .collect();
    let mut workloads = 0;
    for o in &objects {
        let kind = str_at(o, &["kind"]).unwrap_or_default();
        if kind != "Deployment" && kind != "Job" {
            continue;
        }
        workloads += 1;
        let name = str_at(o, &["metadata", "name"]).expect("name");
        let pod = &o["spec"]["template"]["spec"];
        let labels = &o["spec"]["template"]["metadata"]["labels"];
        let containers: Vec<&Value> = seq(pod, "initContainers")
            .iter()
            .chain(seq(pod, "containers"))
            .collect();
        for c in containers {
            let image = str_at(c, &["image"]).expect("image");
            assert_eq!(image, image_name, "{name} uses the kustomized image");
            let command = seq(c, "command");
            let binary = command.first().and_then(Value::as_str).expect("a command");
            assert!(
                binaries.contains(binary),
                "{name} runs {binary}, not in the image"
            );
            for from in seq(c, "envFrom") {
                if let Some(cm) = str_at(from, &["configMapRef", "name"]) {
                    assert!(config_maps.contains(cm), "{name} reads ConfigMap {cm}");
                }
            }
            for env in seq(c, "env") {
                let var = str_at(env, &["name"]).expect("env name");
                check_variable(name, var, &known);
                if let Some(s) = str_at(env, &["valueFrom", "secretKeyRef", "name"]) {
                    assert_eq!(s, secret_name, "{name} reads Secret {s}");
                    let key = str_at(env, &["valueFrom", "secretKeyRef", "key"]).expect("key");
                    assert!(
                        secret["stringData"].get(key).is_some(),
                        "{name} reads {key}, not in the Secret"
                    );
                }
            }
            // Mounts name volumes of the pod; ConfigMap volumes name ConfigMaps.
            let volumes = seq(pod, "volumes");
            let mut mounted = Vec::new();
            for mount in seq(c, "volumeMounts") {
                let volume = str_at(mount, &["name"]).expect("mount name");
                let v = volumes
                    .iter()
                    .find(|v| str_at(v, &["name"]) == Some(volume))
                    .unwrap_or_else(|| panic!("{name} mounts undefined volume {volume}"));
                if let Some(secret) = str_at(v, &["secret", "secretName"]) {
                    assert!(
                        tls_secrets.contains(secret),
                        "{name} mounts Secret {secret}, which cert-manager.example.yaml does not issue"
                    );
                }
                if let Some(cm) = str_at(v, &["configMap", "name"]) {
                    let optional = v["configMap"]["optional"].as_bool() == Some(true);
                    assert!(
                        optional || config_maps.contains(cm),
                        "{name} mounts ConfigMap {cm}, which is not defined"
                    );
                }
                mounted.push(str_at(mount, &["mountPath"]).expect("mountPath").to_owned());
            }
            if kind != "Deployment" || seq(pod, "initContainers").contains(c) {
                continue;
            }
            let runs = role(command);
            // The policy file is mounted where the configuration says, in
            // every service; the rules file in the routing service.
            for (var, path) in &configured_files {
                let needed = match var.as_str() {
                    "REFNET_REDACTION_POLICY_FILE" => runs != "gateway",
                    "REFNET_ROUTING_RULES_FILE" => runs == "routing",
                    _ => false,
                };
                if needed {
                    assert!(
                        mounted.iter().any(|m| path.starts_with(&format!("{m}/"))),
                        "{name} reads {var}={path} but mounts only {mounted:?}"
                    );
                }
            }
            let port = listen_port(command).expect("--listen with a port");
            let container_ports: Vec<u64> = seq(c, "ports")
                .iter()
                .filter_map(|p| p.get("containerPort").and_then(Value::as_u64))
                .collect();
            assert!(
                container_ports.contains(&u64::from(port)),
                "{name} listens on {port}, declares {container_ports:?}"
            );
            // Probes: `refnet health` over TLS on the listener's port.
            for probe in ["readinessProbe", "livenessProbe"] {
                let probe_command = seq(&c[probe]["exec"], "command");
                assert_eq!(
                    (role(probe_command), probe_port(probe_command)),
                    ("health", Some(port)),
                    "{name} {probe}: {probe_command:?}"
                );
                let args: Vec<&str> = probe_command.iter().filter_map(Value::as_str).collect();
                if let Some(i) = args.iter().position(|a| *a == "--service") {
                    let service = args.get(i + 1).copied().unwrap_or_default();
                    assert!(
                        refnet_api::SERVICE_NAMES.contains(&service),
                        "{name} probes {service}"
                    );
                }
            }
            assert!(
                ingress_ports.contains(&u64::from(port)),
                "the NetworkPolicy admits {name}'s port {port}: {ingress_ports:?}"
            );
            assert!(
                c["resources"]["requests"].get("cpu").is_some(),
                "{name} requests resources"
            );
            // A Service selects these pods and targets the port.
            let component = str_at(labels, &["app.kubernetes.io/component"]).expect("component");
            let svc = services
                .iter()
                .find(|s| {
                    str_at(&s["spec"]["selector"], &["app.kubernetes.io/component"])
                        == Some(component)
                })
                .unwrap_or_else(|| panic!("a Service selects {name}"));
            let targets: Vec<String> = seq(&svc["spec"], "ports")
                .iter()
                .filter_map(|p| p.get("targetPort"))
                .map(|t| match t {
                    Value::Number(n) => n.to_string(),
                    other => other.as_str().unwrap_or_default().to_owned(),
                })
                .collect();
            let port_names: Vec<&str> = seq(c, "ports")
                .iter()
                .filter_map(|p| str_at(p, &["name"]))
                .collect();
            assert!(
                targets
                    .iter()
                    .any(|t| *t == port.to_string() || port_names.contains(&t.as_str())),
                "{name}'s Service targets {targets:?}"
            );
        }
    }
    assert!(
        workloads >= 7,
        "four services, the gateway and the two Jobs"
    );
    // Only refnet's workloads reach the database.
    let db_policy = objects
        .iter()
        .filter(|o| str_at(o, &["kind"]) == Some("NetworkPolicy"))
        .find(|np| {
            seq(&np["spec"], "ingress").iter().any(|rule| {
                seq(rule, "ports")
                    .iter()
                    .any(|p| p.get("port").and_then(Value::as_u64) == Some(5432))
            })
        })
        .expect("a NetworkPolicy guards PostgreSQL");
    let admitted: Vec<String> = seq(&db_policy["spec"], "ingress")
        .iter()
        .flat_map(|rule| seq(rule, "from").to_vec())
        .filter_map(|from| {
            str_at(
                &from,
                &["podSelector", "matchLabels", "app.kubernetes.io/name"],
            )
            .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        admitted,
        vec!["refnet".to_owned()],
        "only refnet pods reach the database"
    );
    for o in &objects {
        if matches!(str_at(o, &["kind"]), Some("Deployment" | "Job")) {
            assert_eq!(
                str_at(
                    &o["spec"]["template"]["metadata"]["labels"],
                    &["app.kubernetes.io/name"]
                ),
                Some("refnet"),
                "{:?} is admitted to the database",
                str_at(o, &["metadata", "name"])
            );
        }
    }

    // Compose: binaries, ports, dependencies, variables, mounted files.
    let compose = &documents(&dir.join("compose.yaml"))[0];
    let services = compose["services"].as_mapping().expect("services");
    for (name, svc) in services {
        let name = name.as_str().expect("service name");
        if let Some(deps) = svc.get("depends_on").and_then(Value::as_mapping) {
            for (dep, _) in deps {
                let dep = dep.as_str().expect("dependency");
                assert!(
                    services.contains_key(dep),
                    "{name} depends on undefined {dep}"
                );
            }
        }
        if let Some(env) = svc.get("environment").and_then(Value::as_mapping) {
            for (var, _) in env {
                check_variable(name, var.as_str().expect("var"), &known);
            }
        }
        let command = seq(svc, "command");
        if let Some(binary) = command.first().and_then(Value::as_str)
            && binary.starts_with("refnet")
        {
            assert!(binaries.contains(binary), "{name} runs {binary}");
            // Desks reach the gateway (or the all-in-one server); the
            // services only through it.
            let published: Vec<&str> = seq(svc, "ports").iter().filter_map(Value::as_str).collect();
            match (listen_port(command), role(command)) {
                (Some(port), "gateway" | "serve") => assert!(
                    published.iter().any(|p| p.ends_with(&format!(":{port}"))),
                    "{name} publishes its --listen port {port}: {published:?}"
                ),
                (Some(_), _) => assert!(
                    published.is_empty(),
                    "{name} is reached through the gateway only: {published:?}"
                ),
                (None, _) => {}
            }
        }
        for volume in seq(svc, "volumes") {
            if let Some(source) = volume.as_str().and_then(|v| v.split(':').next())
                && source.starts_with("./")
            {
                assert!(dir.join(source).exists(), "{name} mounts missing {source}");
            }
        }
    }

    // The collector's pipelines use components it defines.
    let collector = &documents(&dir.join("otel-collector.yaml"))[0];
    let pipelines = collector["service"]["pipelines"]
        .as_mapping()
        .expect("pipelines");
    assert!(!pipelines.is_empty());
    for (pipeline, p) in pipelines {
        for section in ["receivers", "processors", "exporters"] {
            for component in seq(p, section) {
                let component = component.as_str().expect("component");
                assert!(
                    collector[section].get(component).is_some(),
                    "pipeline {pipeline:?} uses undefined {section}.{component}"
                );
            }
        }
    }
}
