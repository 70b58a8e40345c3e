//! A local AWS API emulator for the `aws_identity_center` provider tests:
//! `moto_server` (PyPI `moto[server]`) started per test on a free
//! 127.0.0.1 port and killed when the fixture is dropped. Its Identity
//! Center instance (moto has one per account and region), the Identity
//! Store users, permission sets and assignments are made through the
//! emulator's own API with the official SDK clients, as an administrator
//! would.
//!
//! Without `moto_server` the tests print a notice and pass, except with
//! `CI=true`, where that is a failure.

use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use aws_sdk_identitystore::types::Email;
use aws_sdk_ssoadmin::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ssoadmin::types::{PrincipalType, TargetType};
use aws_smithy_http_client::tls::{Provider as TlsProvider, rustls_provider::CryptoMode};

pub const REGION: &str = "us-east-1";
/// The account jitbot's assignments are in.
pub const ACCOUNT: &str = "111111111111";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (or, in CI, fails) when the emulator cannot run.
fn unavailable(what: &str) {
    if in_ci() {
        panic!("{what} (CI=true: the AWS IAM Identity Center tests must run; `pip install 'moto[server]'`)");
    }
    eprintln!("NOTICE: skipping an AWS IAM Identity Center provider test: {what}");
}

/// jitbot takes credentials from the standard chain only: the environment
/// is the first link. Every test sets the same values, once per process
/// (the `jitbot` command-line runs inherit them).
pub fn set_credentials_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the same constant values every time, written once before
        // any AWS client of this process reads them.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
}

pub struct Moto {
    child: Child,
    pub url: String,
    pub admin: aws_sdk_ssoadmin::Client,
    pub store: aws_sdk_identitystore::Client,
    pub instance_arn: String,
    pub identity_store_id: String,
}

impl Moto {
    /// `None` when `moto_server` is not installed (outside CI).
    pub async fn start() -> Option<Self> {
        set_credentials_env();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let port_arg = port.to_string();
        // `moto_server` is the package's entry point; where pip put no
        // script on PATH, the module runs the same server.
        let candidates: [(&str, Vec<&str>); 2] = [
            ("moto_server", vec!["-H", "127.0.0.1", "-p", &port_arg]),
            ("python3", vec!["-m", "moto.server", "-H", "127.0.0.1", "-p", &port_arg]),
        ];
        let mut child = None;
        for (program, args) in &candidates {
            match Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => {
                    child = Some(c);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("cannot start {program}: {e}"),
            }
        }
        let Some(child) = child else {
            unavailable("moto_server is not installed");
            return None;
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut moto = Self {
            child,
            admin: aws_sdk_ssoadmin::Client::from_conf(admin_config(&url)),
            store: aws_sdk_identitystore::Client::from_conf(store_config(&url)),
            url,
            instance_arn: String::new(),
            identity_store_id: String::new(),
        };
        // Up once it answers: moto has one Identity Center instance ready.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(out) = moto.admin.list_instances().send().await
                && let Some(i) = out.instances().first()
            {
                moto.instance_arn = i.instance_arn().unwrap().to_owned();
                moto.identity_store_id = i.identity_store_id().unwrap().to_owned();
                return Some(moto);
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                // `python3 -m moto.server` without moto installed ends here.
                unavailable(&format!("the AWS API emulator exited at once ({status}): is moto[server] installed?"));
                return None;
            }
            assert!(Instant::now() < deadline, "moto_server did not answer within 60s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates an Identity Store user; returns its id.
    pub async fn create_user(&self, user_name: &str, email: &str) -> String {
        let name = aws_sdk_identitystore::types::Name::builder().given_name(user_name).family_name("Test").build();
        self.store
            .create_user()
            .identity_store_id(&self.identity_store_id)
            .user_name(user_name)
            .display_name(user_name)
            .name(name)
            .emails(Email::builder().value(email).primary(true).build())
            .send()
            .await
            .unwrap()
            .user_id()
            .to_owned()
    }

    /// Creates a permission set; returns its ARN.
    pub async fn create_permission_set(&self, name: &str) -> String {
        self.admin
            .create_permission_set()
            .instance_arn(&self.instance_arn)
            .name(name)
            .description(format!("{name} access"))
            // Given explicitly: without it the emulator answers with a
            // number where the API (and the SDK) expect an ISO 8601 string.
            .session_duration("PT1H")
            .send()
            .await
            .unwrap()
            .permission_set()
            .unwrap()
            .permission_set_arn()
            .unwrap()
            .to_owned()
    }

    /// Assigns `permission_set` in [`ACCOUNT`] to `user_id`, as an
    /// administrator would by hand.
    pub async fn assign(&self, permission_set: &str, user_id: &str) {
        self.admin
            .create_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_type(TargetType::AwsAccount)
            .target_id(ACCOUNT)
            .permission_set_arn(permission_set)
            .principal_type(PrincipalType::User)
            .principal_id(user_id)
            .send()
            .await
            .unwrap();
    }

    /// Removes the assignment behind jitbot's back.
    pub async fn unassign(&self, permission_set: &str, user_id: &str) {
        self.admin
            .delete_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_type(TargetType::AwsAccount)
            .target_id(ACCOUNT)
            .permission_set_arn(permission_set)
            .principal_type(PrincipalType::User)
            .principal_id(user_id)
            .send()
            .await
            .unwrap();
    }

    /// How many times `user_id` holds `permission_set` in [`ACCOUNT`]
    /// (the API lists an assignment once; more would be a duplicate).
    pub async fn assignments(&self, permission_set: &str, user_id: &str) -> usize {
        let out = self
            .admin
            .list_account_assignments()
            .instance_arn(&self.instance_arn)
            .account_id(ACCOUNT)
            .permission_set_arn(permission_set)
            .send()
            .await
            .unwrap();
        out.account_assignments()
            .iter()
            .filter(|a| a.principal_type() == Some(&PrincipalType::User) && a.principal_id() == Some(user_id))
            .count()
    }

    pub async fn is_assigned(&self, permission_set: &str, user_id: &str) -> bool {
        self.assignments(permission_set, user_id).await > 0
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_client() -> aws_sdk_ssoadmin::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(TlsProvider::Rustls(CryptoMode::Ring)).build_https()
}

fn credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "moto")
}

fn admin_config(url: &str) -> aws_sdk_ssoadmin::Config {
    aws_sdk_ssoadmin::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(credentials())
        .http_client(http_client())
        .build()
}

fn store_config(url: &str) -> aws_sdk_identitystore::Config {
    aws_sdk_identitystore::Config::builder()
        .behavior_version(aws_sdk_identitystore::config::BehaviorVersion::latest())
        .region(aws_sdk_identitystore::config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_identitystore::config::Credentials::new("testing", "testing", None, None, "moto"))
        .http_client(http_client())
        .build()
}
