//! The deployment as shipped, run: `deploy/compose.yaml` and the Kubernetes
//! manifests (`kubectl kustomize deploy/k8s`, or this file's own rendering of
//! the kustomization where kubectl is missing) are read, and every refnet
//! container they define is started as an OS process with exactly the
//! command and environment the file gives it. What a container runtime or a
//! cluster would do is done here: host names map to 127.0.0.1 and each
//! container's ports to free ones of this machine; mounted volumes map to
//! directories (the compose stack's TLS and identity volumes are filled by
//! its own one-shot jobs; the cluster's Secrets come from test files, its
//! ConfigMaps from the rendered manifests); the ConfigMap's placeholder
//! identity provider is replaced by the development key, as README step 2
//! asks an operator to adapt it. The one-shot jobs run in order, every
//! service passes its own probe (the gRPC health check over mutual TLS), and
//! a desk then files, routes, reads and watches a referral through the
//! gateway over https://. Any process reporting a `REFNET_` variable that no
//! setting reads, any failed job, probe or call fails the test.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde::Deserialize;
use yaml_serde::Value;

use crate::{
    desk::{Watch, draft_json, row_with, run, shelter_draft, value_of},
    processes::{binary, free_port},
};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// One container: its name, command (the image's `refnet` first) and
/// environment, where its volumes are on this machine, its probe.
#[derive(Debug, Clone, Default)]
struct Container {
    name: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    /// Mount path in the container -> directory here.
    mounts: Vec<(String, PathBuf)>,
    probe: Vec<String>,
    /// A one-shot job (runs to completion before the services start).
    job: bool,
}

/// The whole stack, in start order, and where desks call it.
#[derive(Debug, Default)]
struct Stack {
    containers: Vec<Container>,
    /// The gateway's container name and the port it listens on inside it.
    gateway: (String, u16),
    /// Directory holding the CA desks trust (`ca.pem`) and the signing key.
    ca: PathBuf,
    identity: PathBuf,
}

/// Ports and host names as the test machine has them: (host, port) ->
/// 127.0.0.1:free port, the same for every container that names it.
#[derive(Debug, Default)]
struct Network {
    ports: BTreeMap<(String, u16), u16>,
    database_host: String,
    database_url: String,
    /// Paths already on this machine (the test's own files): left alone.
    here: PathBuf,
}

impl Network {
    fn port(&mut self, host: &str, port: u16) -> u16 {
        *self
            .ports
            .entry((host.to_owned(), port))
            .or_insert_with(free_port)
    }

    /// `value` as seen from `container` on this machine: the database URL is
    /// the test's, `HOST:PORT` (in an address or a URL) becomes
    /// 127.0.0.1:mapped, mounted paths their directories here.
    fn map(&mut self, container: &Container, value: &str) -> String {
        if value.starts_with("postgres://") && value.contains(&format!("@{}:", self.database_host))
        {
            return self.database_url.clone();
        }
        if Path::new(value).starts_with(&self.here) {
            return value.to_owned();
        }
        for (inside, here) in &container.mounts {
            if let Some(rest) = value.strip_prefix(inside.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", here.display());
            }
        }
        let (scheme, rest) = match value.split_once("://") {
            Some((scheme, rest)) => (format!("{scheme}://"), rest),
            None => (String::new(), value),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let Some((host, port)) = authority.rsplit_once(':') else {
            return value.to_owned();
        };
        let Ok(port) = port.parse::<u16>() else {
            return value.to_owned();
        };
        if host.is_empty() || host.contains(['=', ' ', '@']) {
            return value.to_owned();
        }
        // A listener (0.0.0.0) or the container itself (localhost) is the
        // container's own port; any other host is that host's.
        let owner = if matches!(host, "0.0.0.0" | "localhost" | "127.0.0.1") {
            container.name.as_str()
        } else {
            host
        };
        let mapped = self.port(owner, port);
        let host = if host == "localhost" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}{host}:{mapped}{path}")
    }
}

/// A started container, killed on drop; its standard error kept in a file.
struct Running {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The process for `container`: its command with `refnet` as this build's
/// binary, and only its own environment (plus PATH and HOME).
fn command(container: &Container, network: &mut Network) -> Command {
    let args: Vec<String> = container
        .command
        .iter()
        .map(|a| network.map(container, a))
        .collect();
    assert_eq!(
        args.first().map(String::as_str),
        Some("refnet"),
        "{} runs {:?}, not the image's binary",
        container.name,
        args.first()
    );
    let mut command = Command::new(binary("refnet"));
    command.args(&args[1..]).env_clear();
    for keep in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(keep) {
            command.env(keep, v);
        }
    }
    for (k, v) in &container.env {
        command.env(k, network.map(container, v));
    }
    command
}

/// Runs a one-shot job to completion; it must succeed.
fn run_job(container: &Container, network: &mut Network, logs: &Path) {
    let out = command(container, network)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", container.name));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "job {} failed: {}\n{}",
        container.name,
        String::from_utf8_lossy(&out.stdout),
        stderr
    );
    unread_variables(&container.name, &stderr);
    let _ = std::fs::write(logs.join(format!("{}.log", container.name)), &out.stderr);
}

/// Fails if `stderr` reports a `REFNET_` variable no setting reads.
fn unread_variables(name: &str, stderr: &str) {
    assert!(
        !stderr.contains("no setting reads this REFNET_ variable"),
        "{name} was given a variable refnet does not read:\n{stderr}"
    );
}

fn start(container: &Container, network: &mut Network, logs: &Path) -> Running {
    let log = logs.join(format!("{}.log", container.name));
    let file = std::fs::File::create(&log).expect("log file");
    let child = command(container, network)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", container.name));
    Running {
        name: container.name.clone(),
        child,
        log,
    }
}

/// Runs the container's own probe until it passes (bounded).
async fn probe(container: &Container, running: &mut Running, network: &mut Network) {
    let probe = Container {
        command: container.probe.clone(),
        ..container.clone()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            panic!(
                "{} exited ({status}) before its probe passed:\n{}",
                running.name,
                log_of(&running.log)
            );
        }
        let out = command(&probe, network).output().expect("probe runs");
        if out.status.success() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}'s probe never passed: {}\n{}",
            running.name,
            String::from_utf8_lossy(&out.stderr),
            log_of(&running.log)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Starts `stack`, then files, routes, reads and watches a referral through
/// its gateway with the desk client over https://.
async fn run_stack(stack: Stack, mut network: Network, work: &Path) {
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    for job in stack.containers.iter().filter(|c| c.job) {
        run_job(job, &mut network, &logs);
    }
    // Where the stack sends traces over TLS (compose: its collector, with the
    // stack's own certificate), a collector listens.
    let otlp = stack
        .containers
        .iter()
        .filter_map(|c| c.env.get("REFNET_OTLP_ENDPOINT"))
        .find_map(|e| e.strip_prefix("https://"))
        .and_then(|authority| authority.split_once(':'))
        .map(|(host, port)| (host.to_owned(), port.parse::<u16>().expect("OTLP port")));
    let collector = match &otlp {
        Some((host, port)) => {
            let (collector, at) = crate::tls::otlp_collector(
                &stack.ca.join("server.pem"),
                &stack.ca.join("server.key"),
            )
            .await;
            network.ports.insert((host.clone(), *port), at);
            Some(collector)
        }
        None => None,
    };
    let mut running = Vec::new();
    for container in stack.containers.iter().filter(|c| !c.job) {
        running.push(start(container, &mut network, &logs));
    }
    for (container, process) in stack
        .containers
        .iter()
        .filter(|c| !c.job)
        .zip(running.iter_mut())
    {
        assert!(
            !container.probe.is_empty(),
            "{} has no probe",
            container.name
        );
        probe(container, process, &mut network).await;
    }

    let (gateway, port) = &stack.gateway;
    let server = format!("https://localhost:{}", network.port(gateway, *port));
    let ca = stack.ca.join("ca.pem");
    let ca = ca.to_str().expect("utf-8 path");
    let token = |agency: &str| {
        let out = Command::new(binary("refnet"))
            .args(["token", "--key-dir"])
            .arg(&stack.identity)
            .args(["--database-url", &network.database_url])
            .args(["--agency", agency, "--role", "officer"])
            .env_remove("REFNET_CONFIG")
            .output()
            .expect("refnet token");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    };
    let police = token("police-nairobi");
    let ngo = token("ngo-shelter-nairobi");

    // The NGO follows its inbox live, through the gateway.
    let mut watch = Watch::spawn(&server, &ngo, &["inbox", "watch", "--json", "--ca", ca]);

    // Police files from a file.
    let (draft, given_name) = shelter_draft();
    let file = work.join("draft.json");
    std::fs::write(&file, draft_json(&draft)).expect("draft");
    let file = file.to_str().expect("utf-8 path");
    let filed = run(
        &server,
        Some(&police),
        &["referral", "file", file, "--ca", ca],
        None,
    )
    .await;
    assert!(filed.success, "filing through the gateway: {filed:?}");
    let code = value_of(&filed.stdout, "filed");

    // Routing (the worker in the routing service) hands it to the NGO.
    watch.stdout_line(|line| line.contains(&code)).await;
    let inbox = run(&server, Some(&ngo), &["inbox", "list", "--ca", ca], None).await;
    assert!(inbox.success, "{inbox:?}");
    assert!(row_with(&inbox.stdout, &code).is_some(), "{}", inbox.stdout);

    // Police reads it back in full; the NGO sees it with consent.
    let shown = run(
        &server,
        Some(&police),
        &["referral", "show", &code, "--ca", ca],
        None,
    )
    .await;
    assert!(shown.success, "{shown:?}");
    assert!(shown.stdout.contains(&given_name), "{}", shown.stdout);
    let timeline = run(
        &server,
        Some(&police),
        &["timeline", &code, "--ca", ca],
        None,
    )
    .await;
    assert!(timeline.success, "{timeline:?}");

    // A desk without the CA is refused (TLS is real), as is plaintext.
    let untrusted = run(&server, Some(&police), &["referral", "show", &code], None).await;
    assert!(!untrusted.success, "{untrusted:?}");
    let plaintext = run(
        &server.replacen("https://", "http://", 1),
        Some(&police),
        &["referral", "show", &code],
        None,
    )
    .await;
    assert!(!plaintext.success, "{plaintext:?}");

    // A service refuses a client without the internal CA's certificate:
    // only the gateway (and the probes) reach it.
    let service = stack
        .containers
        .iter()
        .find(|c| !c.job && c.name != *gateway)
        .expect("a service");
    let mut direct = Container {
        command: service.probe.clone(),
        ..service.clone()
    };
    let at = direct
        .command
        .iter()
        .position(|a| a == "--client-cert")
        .expect("the service's probe presents a client certificate");
    direct.command.drain(at..at + 4);
    let refused = command(&direct, &mut network).output().expect("probe runs");
    assert!(
        !refused.status.success(),
        "{} answered a client without a certificate",
        service.name
    );

    drop(watch);
    for process in &running {
        unread_variables(&process.name, &log_of(&process.log));
    }
    // Traces reached the collector over TLS, from the gateway and the
    // service behind it, in one trace tree.
    if let Some(collector) = collector {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = collector.0.lock().expect("collector").clone();
            let from = |service: &str| seen.iter().any(|s| s.starts_with(&format!("{service} ")));
            if from("refnet-gateway") && from("refnet-intake") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no traces from the gateway and intake over TLS: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

// ---------------------------------------------------------------- compose

/// `${VAR}`, `${VAR:-default}` and `${VAR:?message}` as compose interpolates
/// them from `env` (a required one missing fails the test).
fn interpolate(text: &str, env: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("closing brace") + at;
        let expr = &rest[at + 2..end];
        let (name, op) = match expr.find([':', '-', '?']) {
            Some(i) => (&expr[..i], &expr[i..]),
            None => (expr, ""),
        };
        let value = env.get(name).filter(|v| !v.is_empty());
        out.push_str(&match (value, op) {
            (Some(v), _) => v.clone(),
            (None, op) if op.starts_with(":-") => op[2..].to_owned(),
            (None, op) if op.starts_with(":?") => panic!("compose requires {name}: {}", &op[2..]),
            (None, _) => String::new(),
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn yaml(text: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|doc| {
            let mut value = Value::deserialize(doc).expect("YAML");
            value.apply_merge().expect("merge keys");
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn compose_stack(work: &Path, env: &BTreeMap<&str, String>) -> Stack {
    let text = std::fs::read_to_string(deploy_dir().join("compose.yaml")).expect("compose.yaml");
    let compose = &yaml(&interpolate(&text, env))[0];
    let services = compose["services"].as_mapping().expect("services");
    let volumes = work.join("volumes");
    let mut all = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().expect("name").to_owned();
        let command = strings(&svc["command"]);
        // refnet's containers, default profile only (the all-in-one is tested by `refnet serve`'s tests).
        if command.first().map(String::as_str) != Some("refnet") || svc.get("profiles").is_some() {
            continue;
        }
        let mut mounts = Vec::new();
        for volume in strings(&svc["volumes"]) {
            let mut parts = volume.split(':');
            let (source, target) = (parts.next().expect("source"), parts.next().expect("target"));
            let here = match source.strip_prefix("./") {
                Some(relative) => deploy_dir().join(relative),
                None => volumes.join(source),
            };
            std::fs::create_dir_all(&here).expect("volume dir");
            mounts.push((target.to_owned(), here));
        }
        let env = svc["environment"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => yaml_serde::to_string(other)
                                .expect("value")
                                .trim()
                                .to_owned(),
                        };
                        (k.as_str().expect("var").to_owned(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let probe = strings(&svc["healthcheck"]["test"]);
        let depends: Vec<String> = svc["depends_on"]
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let job = svc["restart"].as_str() == Some("no");
        all.insert(
            name.clone(),
            (
                Container {
                    name,
                    command,
                    env,
                    mounts,
                    probe: probe.into_iter().skip(1).collect(), // ["CMD", ...]
                    job,
                },
                depends,
            ),
        );
    }
    // Start order: each after what it depends on (among refnet's containers).
    let mut order: Vec<Container> = Vec::new();
    let mut placed = BTreeSet::new();
    while placed.len() < all.len() {
        let ready: Vec<String> = all
            .iter()
            .filter(|(n, (_, deps))| {
                !placed.contains(*n)
                    && deps
                        .iter()
                        .all(|d| placed.contains(d) || !all.contains_key(d))
            })
            .map(|(n, _)| n.clone())
            .collect();
        assert!(!ready.is_empty(), "a dependency cycle in compose.yaml");
        for n in ready {
            order.push(all[&n].0.clone());
            placed.insert(n);
        }
    }
    let gateway = order
        .iter()
        .find(|c| c.command.get(2).map(String::as_str) == Some("gateway"))
        .expect("a gateway");
    let port = listen_port(&gateway.command);
    let tls = gateway
        .mounts
        .iter()
        .find(|(inside, _)| inside == "/etc/refnet/tls")
        .map(|(_, here)| here.clone())
        .expect("the gateway mounts the TLS volume");
    let identity = order
        .iter()
        .flat_map(|c| c.mounts.iter())
        .find(|(inside, _)| inside == "/etc/refnet/identity")
        .map(|(_, here)| here.clone())
        .expect("an identity volume");
    Stack {
        gateway: (gateway.name.clone(), port),
        containers: order,
        ca: tls,
        identity,
    }
}

fn listen_port(command: &[String]) -> u16 {
    command
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| command.get(i + 1))
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("--listen HOST:PORT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_stack_as_shipped_files_routes_and_watches_over_tls() {
    let Some(database_url) = crate::common::fresh_postgres_url().await else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let env = BTreeMap::from([
        ("POSTGRES_PASSWORD", "unused-by-the-test".to_owned()),
        ("REFNET_MASTER_KEY", crate::common::random_master_key()),
        ("REFNET_LOG_FORMAT", "json".to_owned()),
    ]);
    let stack = compose_stack(work.path(), &env);
    let names: Vec<&str> = stack.containers.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        "dev-tls",
        "dev-identity",
        "migrate",
        "agencies",
        "intake",
        "routing",
        "protection",
        "statistics",
        "gateway",
    ] {
        assert!(
            names.contains(&expected),
            "compose runs {expected}: {names:?}"
        );
    }
    let network = Network {
        database_host: "postgres".into(),
        database_url,
        here: work.path().to_owned(),
        ..Network::default()
    };
    run_stack(stack, network, work.path()).await;
}

// ---------------------------------------------------------------- kubernetes

/// The rendered manifests: `kubectl kustomize`, or (without kubectl) the
/// kustomization's resources and generated ConfigMaps read directly.
fn kustomized() -> Vec<Value> {
    let k8s = deploy_dir().join("k8s");
    if let Ok(out) = Command::new("kubectl").arg("kustomize").arg(&k8s).output() {
        assert!(
            out.status.success(),
            "kubectl kustomize: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return yaml(&String::from_utf8(out.stdout).expect("utf-8"));
    }
    eprintln!("kubectl is not installed: rendering deploy/k8s from its kustomization directly");
    let kustomization =
        &yaml(&std::fs::read_to_string(k8s.join("kustomization.yaml")).expect("kustomization"))[0];
    let mut objects = Vec::new();
    for resource in strings(&kustomization["resources"]) {
        objects.extend(yaml(
            &std::fs::read_to_string(k8s.join(resource)).expect("resource"),
        ));
    }
    for generator in kustomization["configMapGenerator"]
        .as_sequence()
        .expect("generators")
    {
        let mut data = yaml_serde::Mapping::new();
        for file in strings(&generator["files"]) {
            let (key, path) = file.split_once('=').expect("key=path");
            let text = std::fs::read_to_string(k8s.join(path)).expect("generated file");
            data.insert(Value::String(key.into()), Value::String(text));
        }
        let mut cm = yaml_serde::Mapping::new();
        cm.insert("kind".into(), "ConfigMap".into());
        let mut meta = yaml_serde::Mapping::new();
        meta.insert("name".into(), generator["name"].clone());
        cm.insert("metadata".into(), Value::Mapping(meta));
        cm.insert("data".into(), Value::Mapping(data));
        objects.push(Value::Mapping(cm));
    }
    objects
}

fn kube_stack(work: &Path, secrets: &BTreeMap<&str, BTreeMap<&str, String>>) -> Stack {
    let objects = kustomized();
    let of_kind = |kind: &'static str| {
        objects
            .iter()
            .filter(move |o| o["kind"].as_str() == Some(kind))
    };
    let mut config_maps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for cm in of_kind("ConfigMap") {
        let name = cm["metadata"]["name"].as_str().expect("name").to_owned();
        let data = cm["data"]
            .as_mapping()
            .expect("data")
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().expect("key").to_owned(),
                    v.as_str().expect("value").to_owned(),
                )
            })
            .collect();
        config_maps.insert(name, data);
    }
    // What an operator adapts (README step 2): the identity provider.
    let config = config_maps
        .get_mut("refnet-config")
        .expect("the refnet-config ConfigMap");
    assert!(
        config.remove("REFNET_AUTH__JWKS_URL").is_some(),
        "a placeholder JWKS URL to adapt"
    );
    config.insert("REFNET_AUTH__ISSUER".into(), "refnet-dev".into());
    config.insert(
        "REFNET_AUTH__JWKS_FILE".into(),
        work.join("identity/jwks.json").display().to_string(),
    );

    // Volumes: each ConfigMap and Secret as a directory of its keys.
    let dir_of = |kind: &str, name: &str, data: &BTreeMap<String, String>| -> PathBuf {
        let dir = work.join(kind).join(name);
        std::fs::create_dir_all(&dir).expect("volume dir");
        for (k, v) in data {
            std::fs::write(dir.join(k), v).expect("volume file");
        }
        dir
    };
    let mut containers = Vec::new();
    let mut gateway = None;
    let workloads = of_kind("Job")
        .map(|o| (o, true))
        .chain(of_kind("Deployment").map(|o| (o, false)));
    for (workload, job) in workloads {
        let workload_name = workload["metadata"]["name"].as_str().expect("name");
        let pod = &workload["spec"]["template"]["spec"];
        let pod_containers: Vec<&Value> = pod["initContainers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_sequence().into_iter().flatten())
            .collect();
        for c in pod_containers {
            let mut env = BTreeMap::new();
            for from in c["envFrom"].as_sequence().into_iter().flatten() {
                let cm = from["configMapRef"]["name"].as_str().expect("configMapRef");
                env.extend(config_maps[cm].clone());
            }
            for var in c["env"].as_sequence().into_iter().flatten() {
                let name = var["name"].as_str().expect("name").to_owned();
                let value = if let Some(v) = var["value"].as_str() {
                    v.to_owned()
                } else if let Some(r) = var["valueFrom"].get("configMapKeyRef") {
                    config_maps[r["name"].as_str().expect("name")][r["key"].as_str().expect("key")]
                        .clone()
                } else if let Some(r) = var["valueFrom"].get("secretKeyRef") {
                    secrets[r["name"].as_str().expect("name")][r["key"].as_str().expect("key")]
                        .clone()
                } else {
                    panic!("{workload_name}: {name} has no value");
                };
                env.insert(name, value);
            }
            // The kubelet expands $(VAR) in the command from the environment.
            let expand = |s: &str| {
                let mut s = s.to_owned();
                for (k, v) in &env {
                    s = s.replace(&format!("$({k})"), v);
                }
                s
            };
            let command: Vec<String> = strings(&c["command"]).iter().map(|a| expand(a)).collect();
            let mut mounts = Vec::new();
            for mount in c["volumeMounts"].as_sequence().into_iter().flatten() {
                let volume = mount["name"].as_str().expect("mount name");
                let v = pod["volumes"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"].as_str() == Some(volume))
                    .expect("volume");
                let here = if let Some(cm) = v["configMap"]["name"].as_str() {
                    dir_of("configmap", cm, &config_maps[cm])
                } else if let Some(secret) = v["secret"]["secretName"].as_str() {
                    let data = secrets
                        .get(secret)
                        .unwrap_or_else(|| panic!("{workload_name} mounts Secret {secret}"))
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect();
                    dir_of("secret", secret, &data)
                } else {
                    let dir = work.join("emptydir").join(workload_name).join(volume);
                    std::fs::create_dir_all(&dir).expect("emptyDir");
                    dir
                };
                mounts.push((
                    mount["mountPath"].as_str().expect("mountPath").to_owned(),
                    here,
                ));
            }
            let probe = strings(&c["readinessProbe"]["exec"]["command"]);
            // The Service of the same name reaches this pod: name it after it.
            let name = workload_name.to_owned();
            if command.get(2).map(String::as_str) == Some("gateway") {
                gateway = Some((name.clone(), listen_port(&command)));
            }
            containers.push(Container {
                name,
                command,
                env,
                mounts,
                probe,
                job,
            });
        }
    }
    // The gateway last among the services (its backends answer its first call).
    containers.sort_by_key(|c| {
        (
            !c.job,
            c.command.get(2).map(String::as_str) == Some("gateway"),
        )
    });
    Stack {
        gateway: gateway.expect("a gateway Deployment"),
        containers,
        ca: work.join("ca"),
        identity: work.join("identity"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_manifests_as_shipped_file_route_and_watch_over_tls() {
    let Some(database_url) = crate::common::fresh_postgres_url().await else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    // The Secrets an operator creates (cert-manager would issue the TLS ones).
    let ca = refnet_devtools::certs::DevCa::new("test cluster CA").expect("CA");
    let internal_names = [
        "localhost",
        "127.0.0.1",
        "refnet-intake",
        "refnet-routing",
        "refnet-protection",
        "refnet-statistics",
    ];
    let (internal_cert, internal_key) = ca.sign("refnet internal", &internal_names).expect("cert");
    let (gateway_cert, gateway_key) = ca
        .sign("refnet gateway", &["localhost", "127.0.0.1"])
        .expect("cert");
    let secrets = BTreeMap::from([
        (
            "refnet-secrets",
            BTreeMap::from([
                ("REFNET_MASTER_KEY", crate::common::random_master_key()),
                ("REFNET_DATABASE_URL", database_url.clone()),
            ]),
        ),
        (
            "refnet-internal-tls",
            BTreeMap::from([
                ("tls.crt", internal_cert),
                ("tls.key", internal_key),
                ("ca.crt", ca.pem().to_owned()),
            ]),
        ),
        (
            "refnet-gateway-tls",
            BTreeMap::from([
                ("tls.crt", gateway_cert),
                ("tls.key", gateway_key),
                ("ca.crt", ca.pem().to_owned()),
            ]),
        ),
    ]);
    std::fs::create_dir_all(work.path().join("ca")).expect("ca dir");
    ca.write(&work.path().join("ca"), "ca").expect("ca.pem");
    // The collector's certificate (cert-manager.example.yaml issues it from the internal CA).
    ca.write_signed(
        &work.path().join("ca"),
        "server",
        &["localhost", "127.0.0.1"],
    )
    .expect("collector certificate");
    refnet_core::devkeys::ensure(&work.path().join("identity")).expect("development key");
    let stack = kube_stack(work.path(), &secrets);
    let names: Vec<&str> = stack.containers.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        "refnet-migrate",
        "refnet-agencies",
        "refnet-intake",
        "refnet-routing",
        "refnet-protection",
        "refnet-statistics",
        "refnet-gateway",
    ] {
        assert!(
            names.contains(&expected),
            "the manifests run {expected}: {names:?}"
        );
    }
    let network = Network {
        database_host: "unused".into(),
        database_url,
        here: work.path().to_owned(),
        ..Network::default()
    };
    run_stack(stack, network, work.path()).await;
}
