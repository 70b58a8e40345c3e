//! Linking through a real OpenID provider: the full browser flow, every
//! refusal, groups from userinfo, refresh, and step-up.

use std::time::Duration;

use crate::idp_support::{Browser, OidcEnv, OidcOptions, idp_available};
use crate::slack_support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_signs_in_at_the_idp_and_stores_verified_groups() {
    if !idp_available() {
        return;
    }
    let o = OidcEnv::start(OidcOptions::default()).await;
    let answer = o.env.command_json("U0ALICE", "link").await;
    let url = OidcEnv::link_url(&answer);
    assert!(url.starts_with(&format!("{}/oidc/link/", o.public_url)), "{url}");
    assert!(answer["text"].as_str().unwrap().contains("Link your Slack account to Test IdP"));

    // A link scanner's GET uses up nothing.
    let scanner = Browser::new().get(&url).await;
    assert_eq!(scanner.status, 200);
    assert!(scanner.body.contains("Link Slack user <strong>@alice</strong> to Test IdP?"), "{}", scanner.body);

    let page = o.complete(&url, "alice").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Linked as alice@example.com — groups: engineering. You can close this tab."), "{}", page.body);

    let link = o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().unwrap();
    assert_eq!(link.source, "oidc");
    assert_eq!(link.issuer, o.idp.issuer);
    assert_eq!(link.subject, "alice");
    assert!(link.auth_time.is_some());
    let dm = eventually("the link DM", || o.env.slack.posts_to("U0ALICE").first().cloned()).await;
    assert_eq!(dm["text"], "Linked as alice@example.com — groups: engineering.");

    let whoami = o.env.command("U0ALICE", "whoami").await;
    assert!(whoami.contains("alice@example.com") && whoami.contains("Groups: engineering"), "{whoami}");

    // The token was single-use.
    let again = Browser::new().get(&url).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("already used"));

    assert_eq!(o.env.command("U0ALICE", "unlink").await, "Your link was removed. Run `/jit link` to link again.");
    assert!(o.env.db.link(&crate::support::user("U0ALICE")).await.unwrap().is_none());
    o.env.stop().await;
}
