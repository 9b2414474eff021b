//! TLS and authentication against real servers: a Pulsar broker with a TLS
//! listener and token authentication, and Apache Cassandra 5 with client
//! encryption and `PasswordAuthenticator`, both signed by a test CA
//! (`compose/native/secure.sh`). The right CA and secret connect; a wrong
//! CA, token or password is refused with an error that says which, never a
//! panic; the `tracking` binary, logging at debug level, never prints the
//! token or the password, when it works and when it is refused.
//!
//! `#[ignore]`d in a plain `cargo test`; `.ci/run` runs them:
//!
//! ```text
//! compose/native/secure.sh up --wipe && eval "$(compose/native/secure.sh env)"
//! cargo test --test secure_servers -- --ignored
//! ```
//!
//! The environment names files; the secrets are read from them.

mod common;

use alpes_tracking::log::pulsar::{build_client, PulsarOptions, Secret};
use alpes_tracking::store::scylladb::{session, ScyllaConfig};
use common::{binary, request, wait_for};
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, SubType};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: eval \"$(compose/native/secure.sh env)\" after secure.sh up")
    })
}

fn path_var(name: &str) -> PathBuf {
    PathBuf::from(var(name))
}

/// A secret from the file an environment variable names.
fn secret_of(name: &str) -> String {
    let path = var(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {path} ({name}): {e}"))
        .trim()
        .to_owned()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

// ---- Pulsar ----------------------------------------------------------------

fn pulsar_options(token_var: Option<&str>, ca_var: &str) -> PulsarOptions {
    let mut o = PulsarOptions::new(var("SECURE_PULSAR_URL"));
    o.token = token_var.map(|v| Secret::new(secret_of(v)));
    o.tls_ca_file = Some(path_var(ca_var));
    o
}

/// Connects in a task of its own, so that a panic fails the test as such:
/// the error message, lowercased.
async fn pulsar_refusal(options: PulsarOptions) -> String {
    let outcome = tokio::spawn(async move { build_client(&options).await.map(|_| ()) }).await;
    let result = outcome.expect("connecting to the broker panicked");
    let e = result
        .expect_err("the broker accepted the connection")
        .to_string();
    eprintln!("refused as expected: {e}");
    e.to_lowercase()
}

#[tokio::test]
#[ignore = "needs the secure servers: compose/native/secure.sh up (see .ci/run)"]
async fn pulsar_over_tls_with_the_token_produces_and_consumes() {
    let client = build_client(&pulsar_options(
        Some("SECURE_PULSAR_TOKEN_FILE"),
        "SECURE_TLS_CA",
    ))
    .await
    .expect("connecting with the right CA and token");
    let topic = format!("persistent://public/default/{}", unique("secure"));
    let mut consumer: pulsar::Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription("secure-test")
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .expect("subscribing over TLS");
    let mut producer = client
        .producer()
        .with_topic(&topic)
        .build()
        .await
        .expect("a producer over TLS");
    producer
        .send_non_blocking(b"over tls".to_vec())
        .await
        .expect("send")
        .await
        .expect("the broker's receipt");
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("a message within 30 s")
        .expect("the consumer's stream ended")
        .expect("receive");
    assert_eq!(message.payload.data, b"over tls");
    consumer.ack(&message).await.expect("ack");
}

#[tokio::test]
#[ignore = "needs the secure servers: compose/native/secure.sh up (see .ci/run)"]
async fn pulsar_refuses_a_wrong_ca_with_a_certificate_error() {
    let e = pulsar_refusal(pulsar_options(
        Some("SECURE_PULSAR_TOKEN_FILE"),
        "SECURE_TLS_WRONG_CA",
    ))
    .await;
    assert!(e.contains("certificate"), "not a certificate error: {e}");
}

#[tokio::test]
#[ignore = "needs the secure servers: compose/native/secure.sh up (see .ci/run)"]
async fn pulsar_refuses_a_wrong_or_missing_token_as_an_authentication_failure() {
    let token = secret_of("SECURE_PULSAR_WRONG_TOKEN_FILE");
    let e = pulsar_refusal(pulsar_options(
        Some("SECURE_PULSAR_WRONG_TOKEN_FILE"),
        "SECURE_TLS_CA",
    ))
    .await;
    assert!(
        e.contains("authenticat"),
        "not an authentication error: {e}"
    );
    assert!(!e.contains(&token.to_lowercase()), "the token is in: {e}");
    let e = pulsar_refusal(pulsar_options(None, "SECURE_TLS_CA")).await;
    assert!(
        e.contains("authenticat"),
        "not an authentication error: {e}"
    );
}

// ---- Cassandra ---------------------------------------------------------------

fn scylla_config(password: &str, ca_var: &str) -> ScyllaConfig {
    let mut cfg = ScyllaConfig::new(&var("SECURE_SCYLLA_NODES"), "system");
    cfg.username = Some(var("SECURE_SCYLLA_USERNAME"));
    cfg.password = Some(password.to_owned());
    cfg.tls_ca = Some(path_var(ca_var));
    cfg
}

async fn cassandra_refusal(cfg: ScyllaConfig) -> String {
    let outcome = tokio::spawn(async move { session(&cfg).await.map(|_| ()) }).await;
    let result = outcome.expect("connecting to Cassandra panicked");
    let e = result
        .expect_err("Cassandra accepted the session")
        .to_string();
    eprintln!("refused as expected: {e}");
    e
}

#[tokio::test]
#[ignore = "needs the secure servers: compose/native/secure.sh up (see .ci/run)"]
async fn cassandra_over_tls_with_the_password_runs_a_query() {
    let password = secret_of("SECURE_SCYLLA_PASSWORD_FILE");
    let s = session(&scylla_config(&password, "SECURE_TLS_CA"))
        .await
        .expect("a session with the right CA and password");
    let rows = s
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .expect("a query over TLS")
        .into_rows_result()
        .expect("rows");
    assert_eq!(rows.rows_num(), 1);
}

#[tokio::test]
#[ignore = "needs the secure servers: compose/native/secure.sh up (see .ci/run)"]
async fn cassandra_refuses_a_wrong_password_as_an_authentication_failure() {
    let wrong = unique("wrong-password");
    let e = cassandra_refusal(scylla_config(&wrong, "SECURE_TLS_CA")).await;
    let lower = e.to_lowercase();
    assert!(
        lower.contains("authenticat") && lower.contains("password"),
        "not an authentication error: {e}"
    );
    assert!(!e.contains(&wrong), "the password is in: {e}");
}

#[tokio::test]
#[ignore = "needs the secure servers: compose/native/secure.sh up (see .ci/run)"]
async fn cassandra_refuses_a_wrong_ca_with_a_certificate_error() {
    let password = secret_of("SECURE_SCYLLA_PASSWORD_FILE");
    let e = cassandra_refusal(scylla_config(&password, "SECURE_TLS_WRONG_CA")).await;
    assert!(
        e.to_lowercase().contains("certificate"),
        "not a certificate error: {e}"
    );
    assert!(!e.contains(&password), "the password is in: {e}");
}

// ---- the binary's output -----------------------------------------------------

/// `tracking` logging at debug level, stdout and stderr into one file.
fn spawn_tracking(args: &[String], out: &Path) -> Child {
    let file = std::fs::File::create(out).expect("output file");
    Command::new(binary())
        .args(args)
        .env("TRACKING_LOG", "debug")
        .env_remove("PULSAR_URL")
        .env_remove("PULSAR_TOKEN")
        .env_remove("SCYLLA_NODES")
        .env_remove("SCYLLA_PASSWORD")
        .stdout(file.try_clone().expect("output file"))
        .stderr(file)
        .spawn()
        .expect("start the tracking binary")
}

/// Waits for the exit code (killing the process after `timeout`).
fn exit_code(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `tracking <args>` to completion: (exit code, everything it printed).
fn run_tracking(args: &[String], dir: &Path, timeout: Duration) -> (Option<i32>, String) {
    let out = dir.join(format!("{}.out", unique("tracking")));
    let mut child = spawn_tracking(args, &out);
    let code = exit_code(&mut child, timeout);
    (code, std::fs::read_to_string(&out).unwrap_or_default())
}

/// The line the binary ends with when it gives up (`error: ...`).
fn final_error(output: &str) -> &str {
    output
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no final error line in:\n{output}"))
}

fn assert_secret_absent(output: &str, secret: &str, what: &str) {
    let leaked: Vec<&str> = output.lines().filter(|l| l.contains(secret)).collect();
    assert!(
        leaked.is_empty(),
        "the {what} is in the output:\n{}",
        leaked.join("\n")
    );
}

fn store_args(keyspace: &str, password_file: &Path, ca: &Path) -> Vec<String> {
    vec![
        "--scylla-nodes".into(),
        var("SECURE_SCYLLA_NODES"),
        "--scylla-keyspace".into(),
        keyspace.into(),
        "--scylla-consistency".into(),
        "one".into(),
        "--scylla-username".into(),
        var("SECURE_SCYLLA_USERNAME"),
        "--scylla-password-file".into(),
        password_file.display().to_string(),
        "--scylla-tls-ca".into(),
        ca.display().to_string(),
    ]
}

fn pulsar_args(token_file: &Path, commands: &str, events: &str) -> Vec<String> {
    vec![
        "--pulsar-url".into(),
        var("SECURE_PULSAR_URL"),
        "--pulsar-token-file".into(),
        token_file.display().to_string(),
        "--pulsar-tls-ca-file".into(),
        var("SECURE_TLS_CA"),
        "--pulsar-admin-url".into(),
        var("SECURE_PULSAR_ADMIN_URL"),
        "--topic-commands".into(),
        format!("persistent://public/default/{commands}"),
        "--topic-events".into(),
        format!("persistent://public/default/{events}"),
    ]
}

fn admin_addr() -> SocketAddr {
    let url = var("SECURE_PULSAR_ADMIN_URL");
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("SECURE_PULSAR_ADMIN_URL {url:?}: {e}"))
}

/// Creates a partitioned topic through the admin API, which refuses a
/// request without the token.
fn create_partitioned(short: &str, partitions: u32, token: &str) {
    let path = format!("/admin/v2/persistent/public/default/{short}/partitions");
    let body = partitions.to_string();
    let json = ("Content-Type", "application/json");
    let refused = request(admin_addr(), "PUT", &path, &[json], body.as_bytes()).unwrap();
    assert_eq!(refused.status, 401, "without a token: {}", refused.body);
    let bearer = format!("Bearer {token}");
    let r = request(
        admin_addr(),
        "PUT",
        &path,
        &[json, ("Authorization", &bearer)],
        body.as_bytes(),
    )
    .unwrap();
    assert!(
        r.status == 204 || r.status == 200,
        "{} {}",
        r.status,
        r.body
    );
}

#[test]
#[ignore = "needs the secure servers: compose/native/secure.sh up (see .ci/run)"]
fn the_binary_works_over_tls_and_never_prints_the_token_or_the_password() {
    let token = secret_of("SECURE_PULSAR_TOKEN_FILE");
    let password = secret_of("SECURE_SCYLLA_PASSWORD_FILE");
    let (token_file, password_file) = (
        path_var("SECURE_PULSAR_TOKEN_FILE"),
        path_var("SECURE_SCYLLA_PASSWORD_FILE"),
    );
    let ca = path_var("SECURE_TLS_CA");
    let tmp = tempfile::tempdir().unwrap();
    let keyspace = format!("it_secure_{}", std::process::id());
    let store = store_args(&keyspace, &password_file, &ca);

    let mut args = vec!["schema".to_string(), "apply".into()];
    args.extend(store.iter().cloned());
    let (code, schema_out) = run_tracking(&args, tmp.path(), Duration::from_secs(120));
    assert_eq!(code, Some(0), "schema apply failed:\n{schema_out}");

    let commands = unique("secure-commands");
    let events = unique("secure-events");
    create_partitioned(&commands, 2, &token);
    let mut args = vec![
        "run".to_string(),
        "--data-dir".into(),
        tmp.path().join("data").display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(pulsar_args(&token_file, &commands, &events));
    args.extend(store.iter().cloned());
    let out = tmp.path().join("worker.out");
    let mut worker = spawn_tracking(&args, &out);
    let output = || std::fs::read_to_string(&out).unwrap_or_default();
    let addr: SocketAddr = wait_for("the worker to listen", Duration::from_secs(90), || {
        if let Ok(Some(status)) = worker.try_wait() {
            panic!("the worker exited ({status}):\n{}", output());
        }
        let text = output();
        let line = text.lines().find(|l| l.contains("listening on http://"))?;
        line.split("listening on http://")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    wait_for("readiness", Duration::from_secs(60), || {
        request(addr, "GET", "/tracking/ready", &[], b"")
            .ok()
            .filter(|r| r.status == 200)
    });
    let id = unique("secure-interaction");
    let body = common::command(
        Some(&id),
        "secure-user",
        "click",
        "c-secure",
        "2026-11-20T10:00:00Z",
    );
    let r = common::post_json(addr, "/tracking/interactions", &body).unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    // Through the commands topic over TLS, into the store over TLS.
    wait_for("the interaction stored", Duration::from_secs(60), || {
        (request(
            addr,
            "GET",
            &format!("/tracking/interactions/{id}"),
            &[],
            b"",
        )
        .ok()?
        .status
            == 200)
            .then_some(())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    assert_eq!(
        exit_code(&mut worker, Duration::from_secs(60)),
        Some(0),
        "{}",
        output()
    );
    let logs = output();
    assert!(
        logs.contains("DEBUG"),
        "the worker did not log at debug level"
    );
    for text in [&schema_out, &logs] {
        assert_secret_absent(text, &token, "Pulsar token");
        assert_secret_absent(text, &password, "Cassandra password");
    }
}

#[test]
#[ignore = "needs the secure servers: compose/native/secure.sh up (see .ci/run)"]
fn a_refused_password_or_token_is_reported_and_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = path_var("SECURE_TLS_CA");
    let wrong_password = unique("wrong-password");
    let wrong_password_file = tmp.path().join("wrong.password");
    std::fs::write(&wrong_password_file, format!("{wrong_password}\n")).unwrap();

    let mut args = vec!["schema".to_string(), "status".into()];
    args.extend(store_args("tracking", &wrong_password_file, &ca));
    let (code, out) = run_tracking(&args, tmp.path(), Duration::from_secs(120));
    assert_eq!(code, Some(1), "{out}");
    let error = final_error(&out).to_lowercase();
    assert!(
        error.contains("authenticat") && error.contains("password"),
        "no authentication error:\n{out}"
    );
    assert_secret_absent(&out, &wrong_password, "wrong Cassandra password");

    // Pulsar mode on the embedded store: the broker is the only server.
    let wrong_token = secret_of("SECURE_PULSAR_WRONG_TOKEN_FILE");
    let mut args = vec![
        "run".to_string(),
        "--data-dir".into(),
        tmp.path().join("data").display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(pulsar_args(
        &path_var("SECURE_PULSAR_WRONG_TOKEN_FILE"),
        "commands.tracking",
        "events.tracking",
    ));
    let (code, out) = run_tracking(&args, tmp.path(), Duration::from_secs(120));
    assert_eq!(code, Some(1), "{out}");
    // The error it exits with says so, not only a log line of the client
    // crate before it.
    assert!(
        final_error(&out).contains("authentication failed"),
        "no authentication error:\n{out}"
    );
    assert_secret_absent(&out, &wrong_token, "wrong Pulsar token");
}
