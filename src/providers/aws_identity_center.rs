//! The `aws_identity_center` provider: hands out AWS IAM Identity Center
//! account assignments (a permission set in an AWS account, for the
//! requester's Identity Center user).
//!
//! - The user is found in the Identity Store with `GetUserId`, by the
//!   linked identity's email matched against `userName` or `emails.value`
//!   (`user_lookup`); never from anything the requester typed. Someone
//!   without a user is refused at `/jit request` ([`Provider::check_requester`]).
//! - grant: `CreateAccountAssignment` (principal type `USER`, target type
//!   `AWS_ACCOUNT`), then `DescribeAccountAssignmentCreationStatus` with
//!   backoff until it succeeded, for at most `assignment_wait`; `FAILED` is a
//!   failure that is retried.
//! - revoke: `DeleteAccountAssignment` and
//!   `DescribeAccountAssignmentDeletionStatus` likewise; an assignment that is
//!   not there is success.
//! - verify: after each change `ListAccountAssignments` is read back; an
//!   assignment missing after the grant or still there after the revocation
//!   is a failure, and is retried.
//!
//! A permission set named by its name is resolved once per name
//! (`ListPermissionSets` + `DescribePermissionSet`) and cached. Credentials
//! come from the standard AWS chain; errors carry AWS's error code and
//! message, never credentials.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_identitystore::types::{AlternateIdentifier, UniqueAttribute};
use aws_sdk_ssoadmin::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssoadmin::types::{AccountAssignmentOperationStatus, PrincipalType, StatusValues, TargetType};
use aws_smithy_http_client::tls::{Provider as TlsProvider, rustls_provider::CryptoMode};
use aws_smithy_types::Document;
use tokio::sync::OnceCell;

use super::spec::{AwsIdentityCenterGrantSpec, GrantSpec};
use super::{ApprovedGrant, GrantTarget, GrantUser, Presence, Provider, ProviderError, ProviderReport};
use crate::config::AwsIdentityCenterProviderConfig;
use crate::domain::Timestamp;
use crate::domain::aws::{PermissionSetRef, UserLookup};

/// How long the lookup at `/jit request` may take: the requester is waiting
/// in Slack, which gives up after 3 seconds.
const REQUEST_LOOKUP_LIMIT: Duration = Duration::from_secs(2);

/// The longest pause between two status polls.
const MAX_POLL_DELAY: Duration = Duration::from_secs(5);

/// AWS error codes that say "try again later" rather than "this will never work".
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "TooManyRequestsException",
    "InternalServerException",
    "ServiceUnavailableException",
    "RequestTimeoutException",
    // Another operation on the same assignment is still running.
    "ConflictException",
    // Temporary credentials expired; the chain fetches new ones.
    "ExpiredTokenException",
    "RequestExpired",
];

struct Clients {
    admin: aws_sdk_ssoadmin::Client,
    store: aws_sdk_identitystore::Client,
}

/// Creates and deletes Identity Center account assignments.
pub struct AwsIdentityCenterProvider {
    name: String,
    instance_arn: String,
    identity_store_id: String,
    region: String,
    user_lookup: UserLookup,
    endpoint_url: Option<String>,
    timeout: Duration,
    assignment_wait: Duration,
    /// Built on first use: loading the AWS config is async, and a provider
    /// whose credentials are not there yet must not keep jitbot from starting.
    clients: OnceCell<Clients>,
    /// Permission set name -> ARN, filled as names are resolved.
    permission_sets: Mutex<HashMap<String, String>>,
}

/// An assignment in the provider's terms, once the names are resolved.
struct Assignment<'a> {
    account: &'a str,
    permission_set_arn: String,
    user_id: String,
    /// For messages: "permission set ReadOnly in account 123456789012 for userName alice@example.com".
    label: String,
}

impl AwsIdentityCenterProvider {
    /// Builds the provider; nothing is called until the first grant.
    pub fn new(name: &str, config: &AwsIdentityCenterProviderConfig) -> Self {
        Self {
            name: name.to_owned(),
            instance_arn: config.instance_arn.clone(),
            identity_store_id: config.identity_store_id.clone(),
            region: config.region.clone(),
            user_lookup: config.user_lookup,
            endpoint_url: config.endpoint_url.clone(),
            timeout: config.timeout,
            assignment_wait: config.assignment_wait,
            clients: OnceCell::new(),
            permission_sets: Mutex::new(HashMap::new()),
        }
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| async {
                // rustls with ring, as the rest of jitbot: the SDK's default
                // client would compile aws-lc as well.
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(TlsProvider::Rustls(CryptoMode::Ring))
                    .build_https();
                let timeouts = TimeoutConfig::builder()
                    .connect_timeout(self.timeout)
                    .operation_attempt_timeout(self.timeout)
                    .operation_timeout(self.timeout.saturating_mul(3))
                    .build();
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.region.clone()))
                    .http_client(http)
                    .timeout_config(timeouts);
                if let Some(url) = &self.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let shared = loader.load().await;
                Clients {
                    admin: aws_sdk_ssoadmin::Client::new(&shared),
                    store: aws_sdk_identitystore::Client::new(&shared),
                }
            })
            .await
    }

    /// Runs `op` within a bound that covers its calls and the wait for AWS.
    async fn bounded<T>(
        &self,
        what: &str,
        op: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let limit = self.timeout.saturating_mul(8) + self.assignment_wait;
        match tokio::time::timeout(limit, op).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::retryable(format!("{what} timed out talking to AWS"))),
        }
    }

    /// The Identity Center user id of `value` (by `lookup`), `None` if there
    /// is none. `once`: a single attempt, no SDK retries (someone is waiting).
    async fn user_id(
        &self,
        c: &Clients,
        lookup: UserLookup,
        value: &str,
        once: bool,
    ) -> Result<Option<String>, ProviderError> {
        let attribute = UniqueAttribute::builder()
            .attribute_path(lookup.attribute_path())
            .attribute_value(Document::String(value.to_owned()))
            .build()
            .map_err(|e| ProviderError::permanent(format!("looking up the user: {e}")))?;
        let call = c
            .store
            .get_user_id()
            .identity_store_id(&self.identity_store_id)
            .alternate_identifier(AlternateIdentifier::UniqueAttribute(attribute));
        let result = if once {
            let single = aws_sdk_identitystore::config::Builder::default().retry_config(RetryConfig::disabled());
            call.customize().config_override(single).send().await
        } else {
            call.send().await
        };
        match result {
            Ok(out) => Ok(Some(out.user_id().to_owned())),
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => Ok(None),
            Err(e) => Err(aws_error("looking the user up in the Identity Store (GetUserId)", e)),
        }
    }

    /// The ARN of `ps`, `None` if it is a name no permission set has.
    async fn permission_set_arn(&self, c: &Clients, ps: &PermissionSetRef) -> Result<Option<String>, ProviderError> {
        let name = match ps {
            PermissionSetRef::Arn(arn) => return Ok(Some(arn.clone())),
            PermissionSetRef::Name(name) => name,
        };
        if let Some(arn) = self.cached_permission_set(name) {
            return Ok(Some(arn));
        }
        let mut next: Option<String> = None;
        loop {
            let page = c
                .admin
                .list_permission_sets()
                .instance_arn(&self.instance_arn)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_error("listing permission sets (ListPermissionSets)", e))?;
            for arn in page.permission_sets() {
                if self.permission_sets.lock().is_ok_and(|m| m.values().any(|v| v == arn)) {
                    continue;
                }
                let described = c
                    .admin
                    .describe_permission_set()
                    .instance_arn(&self.instance_arn)
                    .permission_set_arn(arn)
                    .send()
                    .await
                    .map_err(|e| aws_error("reading a permission set (DescribePermissionSet)", e))?;
                if let Some(found) = described.permission_set().and_then(|p| p.name())
                    && let Ok(mut cache) = self.permission_sets.lock()
                {
                    cache.insert(found.to_owned(), arn.clone());
                }
                if let Some(arn) = self.cached_permission_set(name) {
                    return Ok(Some(arn));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    fn cached_permission_set(&self, name: &str) -> Option<String> {
        self.permission_sets.lock().ok().and_then(|m| m.get(name).cloned())
    }

    /// Resolves the user and the permission set of `spec`. `Err(note)` when
    /// one of them does not exist (so no such assignment can exist either).
    async fn resolve<'a>(
        &self,
        c: &Clients,
        spec: &'a AwsIdentityCenterGrantSpec,
    ) -> Result<Result<Assignment<'a>, String>, ProviderError> {
        let Some(user_id) = self.user_id(c, spec.user_lookup, spec.user.as_str(), false).await? else {
            return Ok(Err(no_user(spec.user_lookup, spec.user.as_str())));
        };
        let Some(permission_set_arn) = self.permission_set_arn(c, &spec.permission_set).await? else {
            return Ok(Err(format!(
                "there is no permission set named {} in {}",
                spec.permission_set, self.instance_arn
            )));
        };
        let label = format!(
            "permission set {} in account {} for {} {}",
            spec.permission_set,
            spec.account,
            spec.user_lookup.label(),
            spec.user
        );
        Ok(Ok(Assignment { account: spec.account.as_str(), permission_set_arn, user_id, label }))
    }

    /// Whether the user holds the assignment (read with `ListAccountAssignments`).
    async fn is_assigned(&self, c: &Clients, a: &Assignment<'_>) -> Result<bool, ProviderError> {
        let mut next: Option<String> = None;
        loop {
            let page = c
                .admin
                .list_account_assignments()
                .instance_arn(&self.instance_arn)
                .account_id(a.account)
                .permission_set_arn(&a.permission_set_arn)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| aws_error("reading account assignments (ListAccountAssignments)", e))?;
            if page.account_assignments().iter().any(|x| {
                x.principal_type() == Some(&PrincipalType::User) && x.principal_id() == Some(a.user_id.as_str())
            }) {
                return Ok(true);
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(false),
            }
        }
    }

    /// Waits for an asynchronous assignment operation to finish: `first` is
    /// the status the create/delete call answered with, `poll` asks again.
    async fn wait_until_done<F, Fut>(
        &self,
        what: &str,
        first: Option<AccountAssignmentOperationStatus>,
        mut poll: F,
    ) -> Result<(), ProviderError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<Option<AccountAssignmentOperationStatus>, ProviderError>>,
    {
        let deadline = Instant::now() + self.assignment_wait;
        let mut delay = Duration::from_millis(200);
        let mut status = first;
        loop {
            let request_id = match status.as_ref().map(|s| (s.status(), s.request_id())) {
                Some((Some(StatusValues::Succeeded), _)) => return Ok(()),
                Some((Some(StatusValues::Failed), _)) => {
                    let reason = status.as_ref().and_then(|s| s.failure_reason()).unwrap_or("no reason given");
                    return Err(ProviderError::retryable(format!("{what} failed at AWS: {reason}")));
                }
                Some((_, Some(id))) => id.to_owned(),
                _ => return Err(ProviderError::retryable(format!("{what}: AWS answered without a request id"))),
            };
            if Instant::now() + delay > deadline {
                return Err(ProviderError::retryable(format!(
                    "{what} was still in progress at AWS after {} (request {request_id}); it will be checked again",
                    humantime::format_duration(self.assignment_wait)
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL_DELAY);
            status = poll(request_id).await?;
        }
    }

    async fn assign(&self, c: &Clients, spec: &AwsIdentityCenterGrantSpec) -> Result<ProviderReport, ProviderError> {
        let a = match self.resolve(c, spec).await? {
            Ok(a) => a,
            Err(missing) => return Err(ProviderError::permanent(missing)),
        };
        if self.is_assigned(c, &a).await? {
            return Ok(ProviderReport::note(format!("{} was already assigned", a.label)));
        }
        let created = c
            .admin
            .create_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_type(TargetType::AwsAccount)
            .target_id(a.account)
            .permission_set_arn(&a.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(&a.user_id)
            .send()
            .await
            .map_err(|e| aws_error("CreateAccountAssignment", e))?;
        self.wait_until_done("creating the assignment", created.account_assignment_creation_status, |id| async move {
            c.admin
                .describe_account_assignment_creation_status()
                .instance_arn(&self.instance_arn)
                .account_assignment_creation_request_id(id)
                .send()
                .await
                .map(|o| o.account_assignment_creation_status)
                .map_err(|e| aws_error("DescribeAccountAssignmentCreationStatus", e))
        })
        .await?;
        if !self.is_assigned(c, &a).await? {
            return Err(ProviderError::retryable(format!(
                "verification failed: after CreateAccountAssignment, {} is not listed by ListAccountAssignments",
                a.label
            )));
        }
        Ok(ProviderReport::note(format!("assigned {}", a.label)))
    }

    async fn unassign(&self, c: &Clients, spec: &AwsIdentityCenterGrantSpec) -> Result<ProviderReport, ProviderError> {
        let a = match self.resolve(c, spec).await? {
            Ok(a) => a,
            Err(missing) => return Ok(ProviderReport::note(format!("{missing}: nothing to remove"))),
        };
        if !self.is_assigned(c, &a).await? {
            return Ok(ProviderReport::note(format!("{} was not assigned", a.label)));
        }
        let deleted = c
            .admin
            .delete_account_assignment()
            .instance_arn(&self.instance_arn)
            .target_type(TargetType::AwsAccount)
            .target_id(a.account)
            .permission_set_arn(&a.permission_set_arn)
            .principal_type(PrincipalType::User)
            .principal_id(&a.user_id)
            .send()
            .await
            .map_err(|e| aws_error("DeleteAccountAssignment", e))?;
        self.wait_until_done("deleting the assignment", deleted.account_assignment_deletion_status, |id| async move {
            c.admin
                .describe_account_assignment_deletion_status()
                .instance_arn(&self.instance_arn)
                .account_assignment_deletion_request_id(id)
                .send()
                .await
                .map(|o| o.account_assignment_deletion_status)
                .map_err(|e| aws_error("DescribeAccountAssignmentDeletionStatus", e))
        })
        .await?;
        if self.is_assigned(c, &a).await? {
            return Err(ProviderError::retryable(format!(
                "verification failed: after DeleteAccountAssignment, {} is still listed by ListAccountAssignments",
                a.label
            )));
        }
        Ok(ProviderReport::note(format!("removed {}", a.label)))
    }
}

fn no_user(lookup: UserLookup, value: &str) -> String {
    format!("no IAM Identity Center user with {} {value}", lookup.label())
}

fn spec_of(target: &GrantTarget) -> Result<&AwsIdentityCenterGrantSpec, ProviderError> {
    match &target.spec {
        Some(GrantSpec::AwsIdentityCenter(s)) => Ok(s),
        _ => Err(ProviderError::permanent(format!(
            "request {} has no aws_identity_center grant spec (its role was not on an aws_identity_center provider when it was made)",
            target.request_id.get()
        ))),
    }
}

/// Maps an SDK error to a message safe to show: AWS's error code and
/// message for a refusal, the kind of failure otherwise. Throttling, 5xx,
/// conflicts and transport failures are retried; access denied, validation
/// and "not found" are a setup problem that retrying will not fix.
fn aws_error<E, R>(what: &str, e: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus + 'static,
{
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status_code();
            let code = se.err().code().unwrap_or("an unnamed error");
            let message = se.err().message().unwrap_or("");
            let retryable = status >= 500 || status == 429 || RETRYABLE_CODES.contains(&code);
            ProviderError {
                message: format!("{what}: AWS refused: {code}: {message} (HTTP {status})"),
                retryable,
                output: None,
            }
        }
        SdkError::TimeoutError(_) => ProviderError::retryable(format!("{what}: timed out calling AWS")),
        SdkError::ResponseError(_) => ProviderError::retryable(format!("{what}: AWS's answer could not be read")),
        _ => {
            // Dispatch and construction failures: connection errors, and
            // missing credentials. The SDK's text names the cause and never
            // carries key material.
            let detail = error_chain(&e);
            ProviderError::retryable(format!("{what}: cannot call AWS: {detail}"))
        }
    }
}

/// `e` and its sources, each said once ("dispatch failure: io error: ...
/// Connection refused"), cut to a length fit for a Slack message.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    if text.len() > 400 {
        let cut = (0..=400).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The HTTP status of a raw response, for [`aws_error`].
trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_ssoadmin::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[async_trait]
impl Provider for AwsIdentityCenterProvider {
    async fn grant(&self, grant: &ApprovedGrant, _now: Timestamp) -> Result<ProviderReport, ProviderError> {
        let spec = spec_of(grant.target())?;
        self.bounded("the grant", async {
            let c = self.clients().await;
            self.assign(c, spec).await
        })
        .await
    }

    async fn revoke(&self, target: &GrantTarget, _now: Timestamp) -> Result<ProviderReport, ProviderError> {
        let spec = spec_of(target)?;
        self.bounded("the revocation", async {
            let c = self.clients().await;
            self.unassign(c, spec).await
        })
        .await
    }

    fn access_key(&self, target: &GrantTarget) -> Option<String> {
        match &target.spec {
            Some(GrantSpec::AwsIdentityCenter(s)) => Some(format!(
                "aws_identity_center/{}/{}/{}/{}={}",
                self.name,
                s.account,
                s.permission_set,
                s.user_lookup.label(),
                s.user
            )),
            _ => None,
        }
    }

    async fn inspect(&self, target: &GrantTarget) -> Result<Presence, ProviderError> {
        let spec = spec_of(target)?;
        self.bounded("reading the assignment", async {
            let c = self.clients().await;
            match self.resolve(c, spec).await? {
                Ok(a) => Ok(if self.is_assigned(c, &a).await? { Presence::Present } else { Presence::Absent }),
                Err(_) => Ok(Presence::Absent),
            }
        })
        .await
    }

    async fn check_requester(&self, user: &GrantUser) -> Result<(), ProviderError> {
        let lookup = async {
            let c = self.clients().await;
            match self.user_id(c, self.user_lookup, &user.email, true).await? {
                Some(_) => Ok(()),
                None => Err(ProviderError::permanent(no_user(self.user_lookup, &user.email))),
            }
        };
        match tokio::time::timeout(REQUEST_LOOKUP_LIMIT.min(self.timeout), lookup).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::retryable("the Identity Store did not answer in time")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn provider(wait: &str) -> AwsIdentityCenterProvider {
        let text = format!(
            r#"
instance_arn = "arn:aws:sso:::instance/ssoins-0123456789abcdef"
identity_store_id = "d-0123456789"
region = "eu-west-1"
assignment_wait = "{wait}"
"#
        );
        let config: AwsIdentityCenterProviderConfig = toml::from_str(&text).unwrap();
        AwsIdentityCenterProvider::new("aws", &config)
    }

    fn status(s: StatusValues, reason: Option<&str>) -> Option<AccountAssignmentOperationStatus> {
        Some(
            AccountAssignmentOperationStatus::builder()
                .status(s)
                .request_id("req-1")
                .set_failure_reason(reason.map(str::to_owned))
                .build(),
        )
    }

    #[tokio::test]
    async fn an_operation_in_progress_is_polled_until_it_succeeds() {
        let p = provider("10s");
        let polls = AtomicUsize::new(0);
        let result = p
            .wait_until_done("creating the assignment", status(StatusValues::InProgress, None), |id| {
                assert_eq!(id, "req-1");
                let n = polls.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(if n < 2 {
                        status(StatusValues::InProgress, None)
                    } else {
                        status(StatusValues::Succeeded, None)
                    })
                }
            })
            .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(polls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_operation_is_a_retryable_error_with_aws_s_reason() {
        let p = provider("10s");
        let e = p
            .wait_until_done("creating the assignment", status(StatusValues::InProgress, None), |_| async {
                Ok(status(StatusValues::Failed, Some("Received a 404 status error: Not supported account")))
            })
            .await
            .unwrap_err();
        assert!(e.retryable);
        assert_eq!(
            e.message,
            "creating the assignment failed at AWS: Received a 404 status error: Not supported account"
        );
    }

    #[tokio::test]
    async fn an_operation_still_running_after_the_wait_is_retried_later() {
        let p = provider("1s");
        let e = p
            .wait_until_done("deleting the assignment", status(StatusValues::InProgress, None), |_| async {
                Ok(status(StatusValues::InProgress, None))
            })
            .await
            .unwrap_err();
        assert!(e.retryable);
        assert!(e.message.contains("still in progress at AWS after 1s (request req-1)"), "{}", e.message);
    }

    fn refusal(status: u16, code: &str) -> ProviderError {
        use aws_sdk_ssoadmin::config::http::HttpResponse;
        use aws_sdk_ssoadmin::error::ErrorMetadata;
        use aws_sdk_ssoadmin::operation::create_account_assignment::CreateAccountAssignmentError;
        let err =
            CreateAccountAssignmentError::generic(ErrorMetadata::builder().code(code).message("what AWS said").build());
        let raw = HttpResponse::new(status.try_into().unwrap(), aws_smithy_types::body::SdkBody::empty());
        aws_error("CreateAccountAssignment", SdkError::service_error(err, raw))
    }

    #[test]
    fn aws_refusals_are_retried_only_when_waiting_can_help() {
        let e = refusal(400, "ThrottlingException");
        assert!(e.retryable);
        assert_eq!(e.message, "CreateAccountAssignment: AWS refused: ThrottlingException: what AWS said (HTTP 400)");
        assert!(refusal(409, "ConflictException").retryable, "another operation on the assignment is running");
        assert!(refusal(500, "InternalServerException").retryable);
        assert!(refusal(503, "SomethingNew").retryable);
        assert!(!refusal(400, "AccessDeniedException").retryable);
        assert!(!refusal(400, "ValidationException").retryable);
        assert!(!refusal(404, "ResourceNotFoundException").retryable);
        assert!(!refusal(402, "ServiceQuotaExceededException").retryable);
    }

    #[test]
    fn two_roles_on_the_same_assignment_share_one_access_key() {
        use crate::domain::aws::{AwsAccountId, LookupValue};
        use crate::providers::spec::AwsIdentityCenterGrantSpec;
        let p = provider("10s");
        let target = |ps: &str, user: &str| GrantTarget {
            request_id: crate::domain::RequestId::new(1),
            role: crate::domain::RoleName::parse("aws-ro").unwrap(),
            user: GrantUser { email: user.into(), subject: "s".into(), slack_id: "U1".into() },
            expires_at: Timestamp::from_millis(0),
            spec: Some(GrantSpec::AwsIdentityCenter(AwsIdentityCenterGrantSpec {
                account: AwsAccountId::parse("123456789012").unwrap(),
                permission_set: PermissionSetRef::parse(ps).unwrap(),
                user_lookup: UserLookup::UserName,
                user: LookupValue::parse(user).unwrap(),
            })),
        };
        let a = p.access_key(&target("ReadOnly", "alice@example.com"));
        assert_eq!(a.as_deref(), Some("aws_identity_center/aws/123456789012/ReadOnly/userName=alice@example.com"));
        assert_eq!(a, p.access_key(&target("ReadOnly", "alice@example.com")));
        assert_ne!(a, p.access_key(&target("PowerUser", "alice@example.com")));
        assert_ne!(a, p.access_key(&target("ReadOnly", "dave@example.com")));
    }
}
