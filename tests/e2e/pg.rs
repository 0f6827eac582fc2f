//! A PostgreSQL server of a test's own: for stopping and starting it (the
//! restart fault test) and for serving TLS with a test CA (the transport test).

/// A PostgreSQL server of the test's own (initdb into a temporary
/// directory, on a free port), so it can be stopped and started without
/// touching the server the rest of the suite shares.
pub(crate) struct PrivateServer {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivateServer {
    /// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, else the Debian layout.
    fn bindir() -> Option<std::path::PathBuf> {
        let from_config = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        let debian = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|v| v.path().join("bin"))
                    .max()
            });
        from_config
            .into_iter()
            .chain(debian)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    }

    /// `tool` from the server binaries, run as the PostgreSQL owner
    /// (`postgres` when the tests run as root, which initdb refuses).
    fn command(&self, tool: &str) -> std::process::Command {
        let program = self.bin.join(tool);
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        }
    }

    /// Runs `tool` with `args`; fails the test if it fails.
    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A new cluster, started; `None` when the PostgreSQL suite is off.
    /// With it on, missing server binaries fail the test.
    pub(crate) fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// [`start`](Self::start), with TLS on (`ssl=on`) serving `tls`
    /// (certificate and key, PEM) when given.
    pub(crate) fn start_with(tls: Option<(&str, &str)>) -> Option<Self> {
        std::env::var("REFNET_TEST_DATABASE_URL").ok()?;
        let bin = Self::bindir().expect(
            "the PostgreSQL restart test needs the server binaries (initdb, pg_ctl): \
             install PostgreSQL or put pg_config on PATH",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let _ = std::process::Command::new("chown")
            .args(["postgres", &dir.path().display().to_string()])
            .output();
        let server = Self { bin, dir, port };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        if let Some((cert, key)) = tls {
            let data = server.dir.path().join("data");
            std::fs::write(data.join("server.crt"), cert).expect("server.crt");
            std::fs::write(data.join("server.key"), key).expect("server.key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("key permissions");
            let _ = std::process::Command::new("chown")
                .args(["postgres"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .output();
            let conf = data.join("postgresql.auto.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap_or_default();
            text.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            std::fs::write(&conf, text).expect("postgresql.auto.conf");
        }
        server.pg_ctl_start();
        Some(server)
    }

    pub(crate) fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server: `fast` ends every session, as a restart or failover does.
    pub(crate) fn stop(&self, mode: &str) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"]);
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}
