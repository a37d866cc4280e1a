//! Notifications through an SNS topic (approvers, on-call).

use async_trait::async_trait;
use aws_sdk_sns::Client;

use super::describe;
use crate::ports::{Notification, Notifier, StoreError};

/// SNS subjects are at most 100 printable ASCII characters.
const MAX_SUBJECT: usize = 100;

/// Publishes notifications to one topic.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    /// Publishes to `topic_arn`.
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

/// The subject SNS accepts: printable ASCII, no line breaks, at most 100 characters.
fn subject(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_SUBJECT)
        .collect()
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), StoreError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject(&n.subject))
            .message(&n.body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(describe(&e)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_are_printable_ascii_and_short() {
        let s = super::subject(&format!("Approve é\n{}", "x".repeat(200)));
        assert_eq!(s.len(), 100);
        assert!(s.starts_with("Approve ??"));
    }
}
