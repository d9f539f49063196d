//! Real mail servers for the email tests: Dovecot (IMAP + LMTP) and OpenSMTPD delivering into
//! it by LMTP, from Debian's packages, each with its own configuration in a temp dir on free
//! loopback ports; stopped in `Drop`. Needs root (Dovecot switches to its mail user).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "secret";

pub struct MailServers {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    pub lmtp_port: u16,
    pub smtp_port: u16,
    dovecot: Option<Child>,
    smtpd: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, up: bool) -> bool {
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        let open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if open == up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// OpenSMTPD's spool is one folder for the whole machine (/var/spool/smtpd): a message an
/// earlier run left queued (a recipient that never existed) would be retried, and bounced as
/// "delayed" into this run's inbox hours later. Each set of test servers starts with it empty
/// (the mail tests never run two smtpd at once). Restarts within a test keep their queue.
fn clear_smtpd_spool() {
    for sub in [
        "queue",
        "incoming",
        "offline",
        "purge",
        "temporary",
        "corrupt",
    ] {
        let dir = std::path::Path::new("/var/spool/smtpd").join(sub);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
    }
}

impl MailServers {
    /// Starts both servers, or None (with a message) where they cannot run here.
    pub fn start(users: &[&str]) -> Option<MailServers> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "skipped: the mail server tests start Dovecot and OpenSMTPD, which needs root"
            );
            return None;
        }
        for bin in ["dovecot", "smtpd"] {
            if Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {bin}"))
                .output()
                .map_or(true, |o| !o.status.success())
            {
                panic!("{bin} is not installed: `make test` installs dovecot-imapd, dovecot-lmtpd and opensmtpd");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("sportello-mail-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("mail")).unwrap();
        // The temp dir must be reachable by Dovecot's unprivileged processes.
        Command::new("chmod").arg("755").arg(root).status().unwrap();
        Command::new("chown")
            .args(["dovenull:dovenull"])
            .arg(root.join("mail"))
            .status()
            .unwrap();
        let passwd: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}::::::\n"))
            .collect();
        std::fs::write(root.join("passwd"), passwd).unwrap();
        let mut s = MailServers {
            imap_port: free_port(),
            lmtp_port: free_port(),
            smtp_port: free_port(),
            dir,
            dovecot: None,
            smtpd: None,
        };
        s.write_configs();
        s.start_dovecot();
        clear_smtpd_spool();
        s.start_smtp();
        Some(s)
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write_configs(&self) {
        let r = self.root().display();
        let dovecot = format!(
            "base_dir = {r}/run\nstate_dir = {r}/run/state\nprotocols = imap lmtp\nlisten = 127.0.0.1\n\
             ssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\n\
             auth_username_format = %Ln\nfirst_valid_uid = 1\nfirst_valid_gid = 1\n\
             mail_location = maildir:{r}/mail/%n/Maildir\nlog_path = {r}/dovecot.log\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {r}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid=dovenull gid=dovenull home={r}/mail/%n\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {}\n  }}\n}}\n\
             service stats {{\n  unix_listener stats-reader {{\n    mode = 0666\n  }}\n  unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n",
            self.imap_port, self.lmtp_port
        );
        std::fs::write(self.root().join("dovecot.conf"), dovecot).unwrap();
        let smtpd = format!(
            "table users {{ \"@\" = \"dovenull\" }}\nlisten on 127.0.0.1 port {}\n\
             action \"deliver\" lmtp \"127.0.0.1:{}\" rcpt-to virtual <users>\n\
             match from any for any action \"deliver\"\n",
            self.smtp_port, self.lmtp_port
        );
        std::fs::write(self.root().join("smtpd.conf"), smtpd).unwrap();
        // smtpd refuses a configuration file others can write.
        Command::new("chmod")
            .arg("644")
            .arg(self.root().join("smtpd.conf"))
            .status()
            .unwrap();
    }

    pub fn start_dovecot(&mut self) {
        let _ = std::fs::remove_file(self.root().join("run/master.pid"));
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(self.root().join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.root().join("dovecot.out")).unwrap())
            .spawn()
            .expect("start dovecot");
        self.dovecot = Some(child);
        assert!(
            wait_port(self.imap_port, true),
            "dovecot did not start: {}",
            self.log("dovecot.out")
        );
    }

    pub fn stop_dovecot(&mut self) {
        if let Some(mut c) = self.dovecot.take() {
            let _ = c.kill();
            let _ = c.wait();
            // Its children (login, imap processes) follow the master.
            let _ = Command::new("pkill")
                .arg("-f")
                .arg(self.root().join("dovecot.conf"))
                .status();
            wait_port(self.imap_port, false);
        }
    }

    pub fn start_smtp(&mut self) {
        let child = Command::new("smtpd")
            .arg("-d")
            .arg("-f")
            .arg(self.root().join("smtpd.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.root().join("smtpd.out")).unwrap())
            .spawn()
            .expect("start smtpd");
        self.smtpd = Some(child);
        assert!(
            wait_port(self.smtp_port, true),
            "smtpd did not start: {}",
            self.log("smtpd.out")
        );
    }

    pub fn stop_smtp(&mut self) {
        if let Some(mut c) = self.smtpd.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = Command::new("pkill")
                .arg("-f")
                .arg(self.root().join("smtpd.conf"))
                .status();
            wait_port(self.smtp_port, false);
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root().join(name)).unwrap_or_default()
    }

    fn session(&self, user: &str) -> imap::Session<imap::Connection> {
        let client = imap::ClientBuilder::new("127.0.0.1", self.imap_port)
            .mode(imap::ConnectionMode::Plaintext)
            .connect()
            .expect("connect to dovecot");
        client
            .login(user, PASSWORD)
            .map_err(|(e, _)| e)
            .expect("login")
    }

    /// Puts a message in `user`'s `folder` with IMAP APPEND.
    pub fn append(&self, user: &str, folder: &str, message: &[u8]) {
        let mut s = self.session(user);
        if folder != "INBOX" {
            let _ = s.create(folder);
        }
        s.append(folder, message).finish().expect("append");
        let _ = s.logout();
    }

    /// Every message in `user`'s `folder`, raw.
    pub fn messages(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        let mut s = self.session(user);
        let mut out = Vec::new();
        if s.select(folder).is_ok() {
            if let Ok(fetches) = s.fetch("1:*", "BODY.PEEK[]") {
                out = fetches
                    .iter()
                    .filter_map(|f| f.body().map(<[u8]>::to_vec))
                    .collect();
            }
        }
        let _ = s.logout();
        out
    }

    /// Waits until `user`'s `folder` holds `n` messages (mail delivery is asynchronous).
    pub fn wait_messages(
        &self,
        user: &str,
        folder: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        let until = Instant::now() + timeout;
        loop {
            let m = self.messages(user, folder);
            if m.len() >= n || Instant::now() > until {
                return m;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A pipeline reading `user`'s INBOX (moving filed messages to `Protocollati`) and
    /// acknowledging through this SMTP server.
    pub fn pipeline(&self, dir: &Path, user: &str) -> PathBuf {
        let path = dir.join("mail.toml");
        std::fs::write(
            &path,
            format!(
                "office = \"URP\"\n\n[[sources]]\nkind = \"imap\"\nname = \"urp\"\nhost = \"127.0.0.1\"\nport = {}\n\
                 tls = \"plain\"\nusername = \"{user}\"\npassword_env = \"SPORTELLO_TEST_IMAP_PASSWORD\"\n\
                 folders = [\"INBOX\"]\nmove_to = \"Protocollati\"\npoll_secs = 1\n\n\
                 [[stages]]\nkind = \"extract\"\n\n\
                 [[sinks]]\nkind = \"smtp_ack\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"URP <{user}@localhost>\"\nmax_per_hour = 20\n",
                self.imap_port, self.smtp_port
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        self.stop_smtp();
        self.stop_dovecot();
    }
}
