//! The shared idempotency-key scenarios on the AWS deployment: the claim
//! item and the decision are written in one DynamoDB transaction.

use serde_json::Value;

use crate::common::example_policies;
use crate::idempotency_suite::{self, DecisionHost};
use crate::stack::Stack;

impl DecisionHost for Stack {
    fn authorize(&self, agent: &str, user: &str, roles: &[&str], body: &Value) -> (u16, Value) {
        let answer = Stack::authorize(self, agent, &self.user_token(user, roles), body);
        (u16::try_from(answer.status).unwrap_or(0), answer.json)
    }

    fn stored_decision(&self, decision_id: &str) -> Option<Value> {
        self.decision_items()
            .into_iter()
            .find(|r| r["decision_id"] == decision_id)
    }
}

#[test]
fn suite_a_key_replays_only_the_whole_call() {
    idempotency_suite::a_key_replays_only_the_whole_call(&Stack::new(
        "s-idem",
        &example_policies(),
    ));
}
