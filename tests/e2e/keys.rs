//! Master-key rotation without downtime: a running server that holds the next
//! key keeps serving while `refnet keys rotate` re-wraps every data key and the
//! key root; then the new key alone opens everything, the blind index and
//! pseudonyms are unchanged, and the old key alone no longer starts refnet.

use std::process::Command;

use refnet_api::v1 as pb;
use refnet_core::{AppContext, config::Config};

use crate::common::{Backend, TestApp, canary_draft, fresh_postgres_url, random_master_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_sqlite() {
    rotation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_postgres() {
    rotation(Backend::Postgres).await;
}

async fn rotation(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}/refnet.db?mode=rwc", dir.path().display()),
        Backend::Postgres => {
            let Some(url) = fresh_postgres_url().await else {
                return;
            };
            url
        }
    };
    let (old, new) = (random_master_key(), random_master_key());
    let new_file = dir.path().join("new.key");
    std::fs::write(&new_file, &new).expect("key file");
    let with_keys = |master: &str, previous: &[&str]| {
        let (master, previous): (String, Vec<String>) = (
            master.to_owned(),
            previous.iter().map(|k| (*k).to_owned()).collect(),
        );
        move |c: &mut Config| {
            c.master_key = Some(master.into());
            c.previous_master_keys = previous.into_iter().map(Into::into).collect();
        }
    };

    // Step 1: serving with the old key, knowing the new one.
    let app = TestApp::spawn_with(Some(url.clone()), with_keys(&old, &[&new])).await;
    let first = app
        .file("police-nairobi", canary_draft())
        .await
        .referral
        .expect("referral");
    let given_name = |r: &pb::GetReferralResponse| {
        r.referral
            .as_ref()
            .and_then(|r| r.draft.as_ref())
            .and_then(|d| d.subject.as_ref())
            .map(|s| s.given_name.clone())
            .expect("subject")
    };
    // The subject consented to the NGO only, so the health desk, made a
    // party, gets the subject's stable pseudonym (derived from the key root).
    app.make_party(&first.id, "health-nairobi").await;
    let pseudonym_before = given_name(&app.get_as("health-nairobi", &first.id).await);
    assert!(
        pseudonym_before.starts_with("Subject-"),
        "{pseudonym_before}"
    );

    // Step 2: rotate while it serves.
    let out = Command::new(env!("CARGO_BIN_EXE_refnet"))
        .args(["keys", "rotate", "--to-key-file"])
        .arg(&new_file)
        .args(["--database-url", &url])
        .env_remove("REFNET_DATABASE_URL")
        .env_remove("REFNET_PREVIOUS_MASTER_KEYS")
        .env("REFNET_MASTER_KEY", &old)
        .output()
        .expect("refnet keys rotate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("re-wrapped 1 data keys and the key root") && stdout.contains("; 0 left"),
        "{stdout}"
    );
    // The running process opens the re-wrapped key with the new one it holds.
    let given = canary_draft().subject.expect("subject").given_name;
    let got = app.get_as("police-nairobi", &first.id).await;
    assert_eq!(given_name(&got), given);
    app.stop().await;

    // Step 3: the new key alone.
    let app = TestApp::spawn_with(Some(url.clone()), with_keys(&new, &[])).await;
    assert_eq!(
        given_name(&app.get_as("police-nairobi", &first.id).await),
        given
    );
    assert_eq!(
        given_name(&app.get_as("health-nairobi", &first.id).await),
        pseudonym_before,
        "pseudonyms survive the rotation"
    );
    let again = app.file("police-nairobi", canary_draft()).await;
    assert!(
        again
            .possible_duplicates
            .iter()
            .any(|d| d.reference_code == first.reference_code),
        "the blind index survives the rotation: {:?}",
        again.possible_duplicates
    );
    app.stop().await;

    // The old key alone no longer starts refnet, and says why.
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(url.into()),
        ..Config::default()
    }
    .embedded();
    with_keys(&old, &[])(&mut config);
    let Err(refused) = AppContext::build(config).await else {
        panic!("refnet started with the old key alone");
    };
    assert!(refused.to_string().contains("not configured"), "{refused}");
}
