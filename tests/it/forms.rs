//! Modals through the fake Slack: the request form (only my roles,
//! durations bounded by the chosen role, the ticket when required, field
//! errors in the response), the deny form with its optional reason, and
//! the break-glass form with its mandatory one.

use jitbot::domain::RequestId;
use serde_json::{Value, json};

use crate::slack_http::{buttons, texts};
use crate::support::slack::{SlackEnv, eventually, fixture};
use crate::support::slack::{Transport, both_transports};
use crate::workflow::start_on;

both_transports!(
    the_request_form_lists_only_my_roles_and_follows_the_chosen_one,
    submitting_the_form_requests_or_shows_errors_on_the_fields,
    deny_asks_for_an_optional_reason_shown_on_the_card_and_in_the_dm,
    break_glass_asks_the_requester_for_a_mandatory_reason,
);

/// Runs `/jit <text>`; returns the status and the raw body (empty when the
/// command answered with a modal instead of a message).
pub async fn command_raw(env: &SlackEnv, user_id: &str, text: &str) -> (u16, String) {
    env.command_raw(user_id, text).await
}

/// A text input's submitted value.
pub fn typed(value: &str) -> Value {
    json!({"type": "plain_text_input", "value": value})
}

/// A select's submitted value.
pub fn picked(value: &str) -> Value {
    json!({"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}})
}

/// Submits the modal `view` as `user_id` with `values` (block id → value;
/// our action ids equal the block ids); returns Slack's view of our answer.
pub async fn submit(env: &SlackEnv, user_id: &str, view: &Value, values: &[(&str, Value)]) -> Value {
    let mut payload: Value = serde_json::from_str(&fixture("view_submission.json")).unwrap();
    payload["user"]["id"] = user_id.into();
    payload["user"]["team_id"] = "T0WORK".into();
    payload["team"]["id"] = "T0WORK".into();
    // Like Slack, the state has every input of the view, empty ones too.
    let mut state = serde_json::Map::new();
    for b in view["blocks"].as_array().unwrap().iter().filter(|b| b["type"] == "input") {
        let (block, element) = (b["block_id"].as_str().unwrap(), &b["element"]);
        let empty = match element["type"].as_str().unwrap() {
            "static_select" => json!({"type": "static_select", "selected_option": null}),
            kind => json!({"type": kind, "value": null}),
        };
        state.insert(block.to_owned(), json!({ element["action_id"].as_str().unwrap(): empty }));
    }
    for (block, value) in values {
        state.insert((*block).to_owned(), json!({ *block: value }));
    }
    let mut submitted = view.clone();
    submitted["state"] = json!({ "values": state });
    payload["view"] = submitted;
    let (status, answer) = env.interact(&payload).await;
    assert_eq!(status, 200);
    answer.expect("a form submission is answered in the acknowledgement")
}

/// Picks `value` in the select `action_id` inside the open modal `view`.
pub async fn pick_in_modal(env: &SlackEnv, user_id: &str, view: &Value, action_id: &str, value: &str) -> u16 {
    let mut payload = env.click_payload("T0WORK", user_id, action_id, RequestId::new(1));
    for key in ["channel", "message", "response_url"] {
        payload.as_object_mut().unwrap().remove(key);
    }
    payload["container"] = json!({"type": "view", "view_id": view["id"]});
    let mut open = view.clone();
    open["state"] = json!({"values": {action_id: {action_id: picked(value)}}});
    payload["view"] = open;
    payload["actions"] = json!([{"type": "static_select", "action_id": action_id, "block_id": action_id,
        "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}, "action_ts": "1"}]);
    env.interact(&payload).await.0
}

/// Denies request `id` as `user_id` through the Deny form.
pub async fn deny(env: &SlackEnv, user_id: &str, id: RequestId, reason: Option<&str>) {
    let before = env.slack.calls("views.open").len();
    assert_eq!(env.click(user_id, "deny", id).await, 200);
    eventually("the deny form", async || (env.slack.calls("views.open").len() > before).then_some(())).await;
    let view = env.slack.modal("deny").unwrap();
    assert_eq!(view["private_metadata"], id.get().to_string());
    let values: Vec<(&str, Value)> = reason.map(|r| ("reason", typed(r))).into_iter().collect();
    let answer = submit(env, user_id, &view, &values).await;
    assert_eq!(answer["response_action"], "clear", "{answer}");
}

fn options(element: &Value) -> Vec<String> {
    element["options"].as_array().unwrap().iter().map(|o| o["text"]["text"].as_str().unwrap().to_owned()).collect()
}

fn block<'a>(view: &'a Value, id: &str) -> Option<&'a Value> {
    view["blocks"].as_array().unwrap().iter().find(|b| b["block_id"] == id)
}

async fn the_request_form_lists_only_my_roles_and_follows_the_chosen_one(transport: Transport) {
    let env = start_on(transport, "").await;
    let (status, body) = command_raw(&env, "U0ALICE", "request").await;
    assert_eq!((status, body.as_str()), (200, ""), "the command answers with a form, not a message");
    let form = eventually("the form", async || env.slack.modal("request")).await;
    assert_eq!(form["title"]["text"], "Request access");
    let role = &block(&form, "role").unwrap()["element"];
    let mut roles = options(role);
    roles.sort();
    assert_eq!(roles, ["emergency", "oncall-db", "prod-admin", "prod-db-readonly", "slow-db", "ticketed"]);
    let descriptions: Vec<&str> =
        role["options"].as_array().unwrap().iter().map(|o| o["description"]["text"].as_str().unwrap()).collect();
    assert!(descriptions.contains(&"Read-only SQL on production"), "{descriptions:?}");
    assert!(block(&form, "ticket").is_none(), "no ticket field before a role that needs one");

    // Choosing a role redraws the form: durations bounded by it, its ticket field.
    assert_eq!(pick_in_modal(&env, "U0ALICE", &form, "role", "prod-admin").await, 200);
    let form = eventually("the redrawn form", async || {
        env.slack.modal("request").filter(|v| v["private_metadata"] == "prod-admin")
    })
    .await;
    let duration = &block(&form, "duration").unwrap()["element"];
    assert_eq!(options(duration), ["15m", "30m", "1h"]);
    assert_eq!(duration["initial_option"]["text"]["text"], "15m", "the role's default is preselected");
    assert!(texts(&json!({"blocks": form["blocks"]})).contains("2 approvals needed"));
    pick_in_modal(&env, "U0ALICE", &form, "role", "ticketed").await;
    let form = eventually("the ticket field", async || {
        env.slack.modal("request").filter(|v| v["private_metadata"] == "ticketed")
    })
    .await;
    assert!(block(&form, "ticket").unwrap()["hint"]["text"].as_str().unwrap().contains("INC-[0-9]+"));

    // `/jit request <role>` opens the form with the role chosen.
    command_raw(&env, "U0ALICE", "request slow-db").await;
    eventually("the preselected form", async || {
        env.slack.modal("request").filter(|v| v["private_metadata"] == "slow-db")
    })
    .await;
    // Someone who may request nothing is told so instead.
    let (_, body) = command_raw(&env, "U0MALLORY", "request").await;
    assert!(body.contains("Your groups do not allow you to request any role"), "{body}");
    let (_, body) = command_raw(&env, "U0ALICE", "request sales-crm").await;
    assert!(body.contains("You cannot request `sales-crm`"), "{body}");
    env.stop().await;
}

async fn submitting_the_form_requests_or_shows_errors_on_the_fields(transport: Transport) {
    let env = start_on(transport, "").await;
    command_raw(&env, "U0ALICE", "request ticketed").await;
    let form = eventually("the form", async || env.slack.modal("request")).await;
    let base = |reason: &str, secs: &str| {
        vec![("role", picked("ticketed")), ("duration", picked(secs)), ("reason", typed(reason))]
    };

    let answer = submit(&env, "U0ALICE", &form, &base("deploying the fix", "1800")).await;
    assert_eq!(answer["response_action"], "errors");
    assert!(answer["errors"]["ticket"].as_str().unwrap().contains("needs a ticket id like `INC-[0-9]+`"), "{answer}");
    let mut values = base("deploying the fix", "1800");
    values.push(("ticket", typed("JIRA-1")));
    let answer = submit(&env, "U0ALICE", &form, &values).await;
    assert!(answer["errors"]["ticket"].as_str().unwrap().contains("not a ticket id"), "{answer}");
    let answer = submit(&env, "U0ALICE", &form, &base("fix", "1800")).await;
    assert!(answer["errors"]["reason"].as_str().unwrap().contains("at least 4 characters"), "{answer}");
    let answer = submit(&env, "U0ALICE", &form, &base("deploying INC-7", "14460")).await;
    assert!(answer["errors"]["duration"].as_str().unwrap().contains("longer than the 2h maximum"), "{answer}");
    let answer = submit(&env, "U0ALICE", &form, &[("duration", picked("1800")), ("reason", typed("x"))]).await;
    assert!(answer["errors"]["reason"].is_string(), "private_metadata still names the role: {answer}");
    assert!(answer["errors"]["reason"].is_string(), "private_metadata still names the role: {answer}");
    assert_eq!(env.request_count().await, 0, "nothing is written while the form has errors");

    let mut values = base("deploying the fix", "3600");
    values.push(("ticket", typed("INC-4821")));
    let answer = submit(&env, "U0ALICE", &form, &values).await;
    assert_eq!(answer["response_action"], "update", "{answer}");
    assert_eq!(answer["view"]["title"]["text"], "Request #1");
    assert!(texts(&json!({"blocks": answer["view"]["blocks"]})).contains("Sent to <#C0APPROVALS> for approval"));
    let r = env.db.request(RequestId::new(1)).await.unwrap().unwrap();
    assert_eq!(
        (r.role.as_str(), r.duration.to_string().as_str(), r.ticket.as_deref()),
        ("ticketed", "1h", Some("INC-4821"))
    );
    let card = eventually("the card", async || env.card(RequestId::new(1))).await;
    assert!(texts(&card).contains("<https://jira.example.com/browse/INC-4821|INC-4821>"));
    // The same form submitted twice makes one request.
    let again = submit(&env, "U0ALICE", &form, &values).await;
    assert_eq!(again["view"]["title"]["text"], "Request #1");
    assert_eq!(env.request_count().await, 1);

    // A second open request for the role is an error on the role field.
    command_raw(&env, "U0ALICE", "request ticketed").await;
    let second = eventually("a new form", async || env.slack.modal("request").filter(|v| v["id"] != form["id"])).await;
    let answer = submit(&env, "U0ALICE", &second, &values).await;
    assert!(answer["errors"]["role"].as_str().unwrap().contains("already have request #1"), "{answer}");
    // Auto-approval through the form.
    command_raw(&env, "U0DAVE", "request oncall-db").await;
    let form =
        eventually("dave's form", async || env.slack.modal("request").filter(|v| v["private_metadata"] == "oncall-db"))
            .await;
    let answer =
        submit(&env, "U0DAVE", &form, &[("duration", picked("1800")), ("reason", typed("paging alert"))]).await;
    assert!(texts(&json!({"blocks": answer["view"]["blocks"]})).contains("Auto-approved"), "{answer}");
    eventually("the grant", async || (env.hook.count("grant", RequestId::new(2)) == 1).then_some(())).await;
    env.stop().await;
}

async fn deny_asks_for_an_optional_reason_shown_on_the_card_and_in_the_dm(transport: Transport) {
    let env = start_on(transport, "").await;
    env.command("U0ALICE", "request prod-db-readonly 30m debugging").await;
    let id = RequestId::new(1);
    eventually("the card", async || env.card(id)).await;

    // Someone who may not decide gets an explanation, and no form.
    env.click("U0MALLORY", "deny", id).await;
    eventually("the refusal", async || {
        env.slack.responses().into_iter().find(|r| texts(r).contains("You may not approve"))
    })
    .await;
    assert!(env.slack.calls("views.open").is_empty());

    deny(&env, "U0CAROL", id, Some("use the read replica")).await;
    let card = eventually("the denied card", async || env.card(id).filter(|c| texts(c).contains("Denied by"))).await;
    assert!(texts(&card).contains("Denied by <@U0CAROL>: use the read replica"), "{}", texts(&card));
    assert!(buttons(&card).is_empty());
    let dm = eventually("the DM", async || env.slack.posts_to("U0ALICE").first().cloned()).await;
    assert!(texts(&dm).contains("was denied by <@U0CAROL>: use the read replica"), "{}", texts(&dm));

    // Without a reason, and the form of a request decided meanwhile says so on its field.
    env.command("U0ALICE", "request prod-db-readonly 30m again").await;
    let id = RequestId::new(2);
    eventually("the card", async || env.card(id)).await;
    env.click("U0CAROL", "deny", id).await;
    let form = eventually("the form", async || env.slack.modal("deny").filter(|v| v["private_metadata"] == "2")).await;
    env.click("U0BOB", "approve", id).await;
    eventually("the approval", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    let answer = submit(&env, "U0CAROL", &form, &[]).await;
    assert!(answer["errors"]["reason"].as_str().unwrap().contains("already"), "{answer}");
    env.stop().await;
}

async fn break_glass_asks_the_requester_for_a_mandatory_reason(transport: Transport) {
    let env = start_on(transport, "").await;
    let reply = env.command_json("U0ALICE", "request emergency 1h primary database down").await;
    let id = RequestId::new(1);
    assert_eq!(buttons(&reply), vec![("break_glass".to_owned(), "1".to_owned())], "{reply}");
    let card = eventually("the card", async || env.card(id)).await;
    assert!(buttons(&card).contains(&("break_glass".to_owned(), "1".to_owned())));

    // Only the requester gets the form.
    env.click("U0BOB", "break_glass", id).await;
    eventually("the refusal", async || {
        env.slack.responses().into_iter().find(|r| texts(r).contains("Only the requester"))
    })
    .await;
    assert!(env.slack.calls("views.open").is_empty());

    env.click("U0ALICE", "break_glass", id).await;
    let form = eventually("the form", async || env.slack.modal("break_glass")).await;
    assert_eq!(form["private_metadata"], "1");
    let answer = submit(&env, "U0ALICE", &form, &[("reason", typed("now"))]).await;
    assert!(answer["errors"]["reason"].as_str().unwrap().contains("at least 4 characters"), "{answer}");
    let answer = submit(&env, "U0ALICE", &form, &[("reason", typed("primary down, pager unanswered"))]).await;
    assert_eq!(answer["response_action"], "clear");
    eventually("the grant", async || (env.hook.count("grant", id) == 1).then_some(())).await;
    assert!(env.db.request(id).await.unwrap().unwrap().review_required);
    env.stop().await;
}
