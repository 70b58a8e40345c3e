//! A real OpenLDAP server (Debian's `slapd`) per test: a temp directory
//! with its own `slapd.conf` (mdb backend; core, cosine and inetOrgPerson
//! schemas), a self-signed CA and server certificate made with the
//! `openssl` command line, and `dc=example,dc=com` loaded with `slapadd`
//! before the server starts on free 127.0.0.1 ports: `ldap://` (StartTLS
//! offered) and `ldaps://`. The server process is killed when the fixture
//! is dropped, even if the test panicked.
//!
//! The directory ACL is the least-privilege one the README recommends:
//! jitbot's bind DN may write `member` of the listed groups only and read
//! the lookup attributes of people; every signed-in DN may read groups;
//! `cn=db-admins` is not listed.
//!
//! Without `/usr/sbin/slapd` (or `openssl`) the tests print a notice and
//! pass, except with `CI=true`, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, Mod, Scope, SearchEntry};

pub const SLAPD: &str = "/usr/sbin/slapd";
pub const SUFFIX: &str = "dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
const ADMIN_PASSWORD: &str = "admin-secret-pw";
pub const BIND_DN: &str = "cn=jitbot,ou=services,dc=example,dc=com";
pub const BIND_PASSWORD: &str = "jitbot-bind-S3cret-pw";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
/// The value the filter-injection entry has in `uid` and `mail`.
pub const EVIL: &str = "*)(uid=*";

/// The groups jitbot may change (the ACL lists them) and their member
/// attribute; `cn=db-admins` is not listed.
const WRITABLE: [(&str, &str); 4] =
    [("prod-readers", "member"), ("prod-writers", "member"), ("solo", "member"), ("auditors", "uniqueMember")];
pub const PLACEHOLDER: &str = "cn=placeholder,ou=groups,dc=example,dc=com";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (or, in CI, fails) when `what` is unavailable.
pub fn unavailable(what: &str) {
    if in_ci() {
        panic!("{what} (CI=true: LDAP provider tests must run)");
    }
    eprintln!("NOTICE: skipping an LDAP provider test: {what}");
}

/// The DN of group `cn`.
pub fn group(cn: &str) -> String {
    format!("cn={cn},ou=groups,{SUFFIX}")
}

/// The DN of person `uid`.
pub fn person(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

pub struct Slapd {
    pub dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    pub ldaps_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1/localhost signed by it.
fn make_certs(dir: &Path) {
    let p = |f: &str| dir.join(f).display().to_string();
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=jitbot test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ]));
    run(Command::new("openssl").args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]).args([
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]));
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("server.ext"),
        "-out",
        &p("server.pem"),
    ]));
}

fn slapd_conf(dir: &Path) -> String {
    let d = dir.display();
    let writable = WRITABLE
        .iter()
        .map(|(g, attr)| {
            format!(
                "access to dn.exact=\"{}\" attrs={attr}\n  by dn.exact=\"{BIND_DN}\" write\n  by users read\n  by * none\n",
                group(g)
            )
        })
        .collect::<String>();
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key

database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {d}/db

{writable}access to dn.subtree="ou=groups,{SUFFIX}"
  by users read
  by * none
access to dn.subtree="{PEOPLE}" attrs=entry,mail,uid
  by dn.exact="{BIND_DN}" read
  by * break
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by * none
"#
    )
}

fn seed_ldif() -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {BIND_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: jitbot\nsn: jitbot\nuserPassword: {BIND_PASSWORD}\n\n"
    );
    for uid in ["alice", "bob", "dave", "carol"] {
        out.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {uid}@example.com\n\n",
            person(uid)
        ));
    }
    // The filter-injection decoy: its uid and mail are literally `*)(uid=*`.
    out.push_str(&format!(
        "dn: cn=mallory,{PEOPLE}\nobjectClass: inetOrgPerson\ncn: mallory\nsn: mallory\nuid: {EVIL}\nmail: {EVIL}\n\n"
    ));
    for g in ["prod-readers", "prod-writers", "db-admins"] {
        out.push_str(&format!("dn: {}\nobjectClass: groupOfNames\ncn: {g}\nmember: {PLACEHOLDER}\n\n", group(g)));
    }
    out.push_str(&format!(
        "dn: {}\nobjectClass: groupOfUniqueNames\ncn: auditors\nuniqueMember: {PLACEHOLDER}\n\n",
        group("auditors")
    ));
    // A group whose only member is carol: no placeholder.
    out.push_str(&format!(
        "dn: {}\nobjectClass: groupOfNames\ncn: solo\nmember: {}\n\n",
        group("solo"),
        person("carol")
    ));
    out
}

impl Slapd {
    /// `None` when slapd or openssl is missing (outside CI).
    pub async fn start() -> Option<Self> {
        if !Path::new(SLAPD).exists() {
            unavailable(&format!("no {SLAPD} (apt-get install slapd)"));
            return None;
        }
        if Command::new("openssl").arg("version").output().is_err() {
            unavailable("no openssl command");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        make_certs(dir.path());
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, slapd_conf(dir.path())).unwrap();
        let ldif = dir.path().join("seed.ldif");
        std::fs::write(&ldif, seed_ldif()).unwrap();
        run(Command::new("/usr/sbin/slapadd").arg("-f").arg(&conf).arg("-l").arg(&ldif));
        // A port picked free may be taken before slapd binds it: then slapd
        // exits and is started again on other ports.
        let mut last_log = String::new();
        for _ in 0..5 {
            let (port, ldaps_port) = (free_port(), free_port());
            let log = std::fs::File::create(dir.path().join("slapd.log")).unwrap();
            // `-d 0`: stay in the foreground, so the child is the server.
            let mut child = Command::new(SLAPD)
                .arg("-f")
                .arg(&conf)
                .arg("-h")
                .arg(format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/"))
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let url = format!("ldap://127.0.0.1:{port}");
            let mut listening = false;
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if LdapConnAsync::new(&url).await.is_ok() {
                    listening = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            last_log = std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default();
            // Listening, and still our process (not someone else's server on a reused port).
            if listening && matches!(child.try_wait(), Ok(None)) {
                return Some(Self { dir, child, port, ldaps_port });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("slapd did not start: {last_log}");
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A connection bound as the directory's root DN (plain: this is the
    /// test's own back door, not jitbot's connection).
    pub async fn admin(&self) -> Ldap {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url()).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(ADMIN_DN, ADMIN_PASSWORD).await.unwrap().success().unwrap();
        ldap
    }

    /// The member DNs of group `cn` (lower case), read from the directory.
    pub async fn members(&self, cn: &str) -> Vec<String> {
        let mut ldap = self.admin().await;
        let (entries, _) = ldap
            .search(&group(cn), Scope::Base, "(objectClass=*)", vec!["member", "uniqueMember"])
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
        let mut out: Vec<String> = entries
            .into_iter()
            .flat_map(|e| SearchEntry::construct(e).attrs.into_values().flatten())
            .map(|dn| dn.to_lowercase())
            .collect();
        out.sort();
        out
    }

    /// Whether person `uid` is in group `cn`.
    pub async fn is_member(&self, cn: &str, uid: &str) -> bool {
        self.members(cn).await.contains(&person(uid))
    }

    /// Adds (`true`) or removes person `uid` to/from group `cn` behind
    /// jitbot's back.
    pub async fn set_member(&self, cn: &str, member_dn: &str, present: bool) {
        let mut ldap = self.admin().await;
        let values = [member_dn].into();
        let m = if present { Mod::Add("member", values) } else { Mod::Delete("member", values) };
        ldap.modify(&group(cn), vec![m]).await.unwrap().success().unwrap();
        let _ = ldap.unbind().await;
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
