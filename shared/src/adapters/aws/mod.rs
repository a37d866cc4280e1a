//! The AWS adapters of the ports: DynamoDB for policies, decisions,
//! approvals and counters; S3 for audit evidence; Step Functions for the approval workflow; SNS for
//! notifications; CloudWatch for metrics. Every call goes through the AWS SDK
//! clients the caller built, so tests point them at an emulator.

pub mod cloudwatch;
pub mod dynamodb;
pub mod evidence;
pub mod secrets;
pub mod sfn;
pub mod sns;

use aws_config::{BehaviorVersion, SdkConfig};

// The SDK crates the adapters are built on, for callers that build clients.
pub use {
    aws_config, aws_sdk_cloudwatch, aws_sdk_dynamodb, aws_sdk_s3, aws_sdk_secretsmanager,
    aws_sdk_sfn, aws_sdk_sns,
};

/// Loads the standard AWS configuration (environment, profile, instance or
/// Lambda credentials), optionally against another endpoint (an emulator).
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// An SDK error with its whole chain of causes, for logs and store errors.
pub(crate) fn describe<E: std::error::Error>(e: &E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}
