//! The agency registry managed from the command line on the configured
//! database: an agency added while `refnet serve` runs is accepted within
//! `auth.access_refresh_ms`, a deactivated one refused, an import adds and
//! updates, bad entries are refused naming the field, and every change is in
//! the audit log as the operator's, with the chain intact.

use std::{process::Command, time::Duration};

use refnet_core::entities::audit_log;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::cli::{officer_token, spawn_serve};

const REFNET: &str = env!("CARGO_BIN_EXE_refnet");

/// `refnet ARGS --data-dir DATA`; (success, stdout, stderr).
fn refnet(data: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(REFNET)
        .args(args)
        .args(["--data-dir", data])
        .env_remove("REFNET_DATABASE_URL")
        .env("USER", "registry-test")
        .output()
        .expect("run refnet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether `agency`'s officer can list its inbox on `addr`.
fn accepted(addr: &str, token: &str) -> bool {
    Command::new(REFNET)
        .args(["inbox", "list", "--server", &format!("http://{addr}")])
        .env("REFNET_TOKEN", token)
        .env_remove("REFNET_SERVER")
        .output()
        .expect("run refnet")
        .status
        .success()
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_the_registry_of_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let (_server, addr, log) =
        spawn_serve(data, &[("REFNET_AUTH__ACCESS_REFRESH_MS", "200")]).await;

    let (ok, out, err) = refnet(
        data,
        &[
            "agencies",
            "add",
            "--id",
            "ngo-lamu-haven",
            "--kind",
            "NGO",
            "--name",
            "Lamu Haven (fictional)",
            "--county",
            "lamu",
        ],
    );
    assert!(ok, "add: {err}");
    assert_eq!(
        out.trim(),
        "ngo-lamu-haven\tNGO\tLamu Haven (fictional)\tLamu\tactive"
    );
    let token = officer_token(data, "ngo-lamu-haven");
    eventually("the running server accepts the new agency", || {
        accepted(&addr, &token)
    })
    .await;

    let (ok, _, err) = refnet(data, &["agencies", "deactivate", "--id", "ngo-lamu-haven"]);
    assert!(ok, "deactivate: {err}");
    eventually("the running server refuses the deactivated agency", || {
        !accepted(&addr, &token)
    })
    .await;
    let (ok, _, _) = refnet(data, &["agencies", "activate", "--id", "ngo-lamu-haven"]);
    assert!(ok);
    eventually("and accepts it again", || accepted(&addr, &token)).await;

    let (ok, out, _) = refnet(
        data,
        &[
            "agencies",
            "update",
            "--id",
            "ngo-lamu-haven",
            "--name",
            "Lamu Haven Trust (fictional)",
        ],
    );
    assert!(ok);
    assert!(
        out.contains("Lamu Haven Trust (fictional)\tLamu\tactive"),
        "{out}"
    );

    // Refused, naming what is wrong; nothing written.
    for (args, says) in [
        (
            vec![
                "agencies",
                "add",
                "--id",
                "ngo-lamu-haven",
                "--kind",
                "NGO",
                "--name",
                "x",
            ],
            "exists",
        ),
        (
            vec![
                "agencies", "add", "--id", "bad id", "--kind", "NGO", "--name", "x",
            ],
            "id must be",
        ),
        (
            vec![
                "agencies", "add", "--id", "ngo-x", "--kind", "PIRATES", "--name", "x",
            ],
            "unknown kind",
        ),
        (
            vec![
                "agencies", "add", "--id", "ngo-x", "--kind", "NGO", "--name", "x", "--county",
                "Atlantis",
            ],
            "unknown county",
        ),
        (
            vec!["agencies", "deactivate", "--id", "nobody"],
            "no agency",
        ),
    ] {
        let (ok, _, err) = refnet(data, &args);
        assert!(!ok && err.contains(says), "{args:?}: {err}");
    }

    let file = dir.path().join("registry.toml");
    std::fs::write(
        &file,
        "[[agency]]\nid = \"ngo-lamu-haven\"\nkind = \"NGO\"\nname = \"Lamu Haven (imported)\"\ncounty = \"Lamu\"\n\n\
         [[agency]]\nid = \"children-lamu\"\nkind = \"CHILDREN\"\nname = \"Lamu Children's Office (fictional)\"\ncounty = \"Lamu\"\n",
    )
    .expect("write");
    let (ok, out, err) = refnet(data, &["agencies", "import", file.to_str().expect("utf-8")]);
    assert!(ok, "import: {err}");
    assert!(out.contains("2 agencies imported"), "{out}");
    let (_, listed, _) = refnet(data, &["agencies", "list"]);
    assert!(
        listed.contains("ngo-lamu-haven\tNGO\tLamu Haven (imported)\tLamu\tactive"),
        "{listed}"
    );
    assert!(listed.contains("children-lamu\tCHILDREN\t"), "{listed}");
    let children = officer_token(data, "children-lamu");
    eventually("an imported agency is accepted", || {
        accepted(&addr, &children)
    })
    .await;

    // Every change is audited as the operator's, and the chain verifies.
    let db = refnet_core::db::connect(&format!("sqlite://{data}/refnet.db?mode=rw"))
        .await
        .expect("db");
    let records = audit_log::Entity::find()
        .filter(audit_log::Column::Rpc.starts_with("refnet agencies "))
        .all(&db)
        .await
        .expect("audit");
    let verbs: Vec<&str> = records.iter().map(|r| r.rpc.as_str()).collect();
    assert_eq!(
        verbs,
        [
            "refnet agencies add",
            "refnet agencies deactivate",
            "refnet agencies activate",
            "refnet agencies update",
            "refnet agencies import",
        ],
        "{}",
        log.lock().expect("log")
    );
    assert!(
        records
            .iter()
            .all(|r| r.officer_id == "operator:registry-test")
    );
    let (ok, _, err) = refnet(data, &["audit", "verify"]);
    assert!(ok, "the audit chain verifies: {err}");
}

/// The development identity path of a deployment: `refnet keys dev-jwks`
/// writes a signing key and its JWKS; a server pointed at that JWKS accepts
/// tokens minted from the key (`refnet token --key-dir`) and refuses those of
/// another development key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_development_identity_from_dev_jwks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let idp = dir.path().join("idp");
    let idp = idp.to_str().expect("utf-8");
    let out = Command::new(REFNET)
        .args(["keys", "dev-jwks", "--out", idp])
        .output()
        .expect("run refnet");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwks = format!("{idp}/jwks.json");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&jwks));
    let (_server, addr, log) = spawn_serve(data, &[("REFNET_AUTH__JWKS_FILE", &jwks)]).await;

    let mint = |key_dir: &str| {
        let minted = Command::new(REFNET)
            .args(["token", "--key-dir", key_dir, "--data-dir", data])
            .args(["--agency", "ngo-shelter-nairobi", "--role", "officer"])
            .env_remove("REFNET_DATABASE_URL")
            .output()
            .expect("run refnet");
        assert!(
            minted.status.success(),
            "{}",
            String::from_utf8_lossy(&minted.stderr)
        );
        String::from_utf8_lossy(&minted.stdout).trim().to_owned()
    };
    assert!(accepted(&addr, &mint(idp)), "{}", log.lock().expect("log"));
    let other = dir.path().join("other-idp");
    let other = other.to_str().expect("utf-8");
    let made = Command::new(REFNET)
        .args(["keys", "dev-jwks", "--out", other])
        .output()
        .expect("run refnet");
    assert!(made.status.success());
    assert!(
        !accepted(&addr, &mint(other)),
        "a key the configured JWKS does not hold is refused"
    );
}
