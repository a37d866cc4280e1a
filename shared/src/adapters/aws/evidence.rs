//! The audit archive on AWS: chain heads in a DynamoDB table (one item per
//! chain, moved by conditional writes) and segments of chained records in an
//! S3 bucket with Object Lock, whose default retention (set by the
//! template's `AuditRetentionDays` and `AuditRetentionMode`) makes each
//! segment impossible to overwrite or delete until it expires.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;

use super::describe;
use crate::ports::{AuditArchive, StoreError};

/// Chain heads in `table`, segments in `bucket`.
#[derive(Debug, Clone)]
pub struct S3Evidence {
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    bucket: String,
    table: String,
}

impl S3Evidence {
    /// The archive in `bucket` with heads in `table`.
    pub fn new(
        s3: aws_sdk_s3::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        bucket: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        Self {
            s3,
            dynamodb,
            bucket: bucket.into(),
            table: table.into(),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
impl AuditArchive for S3Evidence {
    async fn head(&self, partition: &str) -> Result<Option<(u64, String)>, StoreError> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("partition", AttributeValue::S(partition.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let seq = item
            .get("seq")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok());
        let hash = item.get("hash").and_then(|v| v.as_s().ok()).cloned();
        match (seq, hash) {
            (Some(seq), Some(hash)) => Ok(Some((seq, hash))),
            _ => Err(StoreError::Corrupt(format!(
                "the head of chain {partition} is malformed"
            ))),
        }
    }

    async fn put_segment(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        // No lock headers: the bucket's default retention applies, and the
        // function's role may not change retention.
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        Ok(())
    }

    async fn advance(
        &self,
        partition: &str,
        from: Option<u64>,
        to: (u64, &str),
    ) -> Result<bool, StoreError> {
        let mut put = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item("partition", AttributeValue::S(partition.to_owned()))
            .item("seq", AttributeValue::N(to.0.to_string()))
            .item("hash", AttributeValue::S(to.1.to_owned()));
        put = match from {
            None => put
                .condition_expression("attribute_not_exists(#p)")
                .expression_attribute_names("#p", "partition"),
            Some(seq) => put
                .condition_expression("#s = :from")
                .expression_attribute_names("#s", "seq")
                .expression_attribute_values(":from", AttributeValue::N(seq.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(describe(&e))),
        }
    }
}
