//! The audit archive on AWS: chain heads in a DynamoDB table (one item per
//! chain, moved by conditional writes, beside a short-lived marker per
//! chained record) and segments of chained records and signed digests in an
//! S3 bucket with Object Lock, whose default retention (set by the
//! template's `AuditRetentionDays` and `AuditRetentionMode`) keeps every
//! version until it expires. Objects are written create-only
//! (`If-None-Match: *`), so no writer replaces another's current version.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_s3::primitives::ByteStream;

use super::describe;
use crate::ports::{Advance, AuditArchive, StoreError};

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

/// The audit key, derived from the secret `secret_id` (its string value),
/// read once at cold start. The secret's value never leaves this function.
pub async fn audit_key(
    sdk: &aws_config::SdkConfig,
    secret_id: &str,
) -> Result<crate::audit::digest::SecretAuditKey, StoreError> {
    let secret = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            unavailable(format!(
                "cannot read the audit key secret `{secret_id}`: {}",
                describe(&e)
            ))
        })?;
    let value = secret.secret_string().ok_or_else(|| {
        StoreError::Corrupt(format!(
            "the audit key secret `{secret_id}` holds no string"
        ))
    })?;
    let key = crate::audit::digest::SecretAuditKey::from_secret(value)
        .map_err(|e| StoreError::Corrupt(format!("audit key secret `{secret_id}`: {e}")))?;
    // The public half is what verifiers pass as `--public-key`.
    tracing::info!(key_id = %key.id(), public_key = %hex::encode(key.public_key()), "audit key loaded");
    Ok(key)
}

/// The chain-head table's item of the marker that says record `id` is chained.
fn marker(id: &str) -> String {
    format!("chained#{id}")
}

/// How long a marker is kept: longer than the stream keeps a record (24
/// hours), so that no delivery of a record can outlive its marker.
const MARKER_DAYS: u64 = 7;

/// The heads `table` holds: every chain's and the digest chain's, read with
/// strongly consistent reads (for `govctl audit verify`).
pub async fn table_heads(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<crate::audit::TableHeads, StoreError> {
    let mut partitions = crate::audit::archive::all_partitions();
    partitions.push(crate::audit::archive::DIGEST_CHAIN.to_owned());
    let mut chains = BTreeMap::new();
    for (partition, item) in batch_get(dynamodb, table, &partitions).await? {
        let head = head_of(&partition, &item)?;
        chains.insert(partition, head);
    }
    let digest = chains.remove(crate::audit::archive::DIGEST_CHAIN);
    Ok(crate::audit::TableHeads { chains, digest })
}

fn head_of(partition: &str, item: &Item) -> Result<(u64, String), StoreError> {
    let seq = item
        .get("seq")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok());
    let hash = item.get("hash").and_then(|v| v.as_s().ok()).cloned();
    match (seq, hash) {
        (Some(seq), Some(hash)) => Ok((seq, hash)),
        _ => Err(StoreError::Corrupt(format!(
            "the head of chain {partition} is malformed"
        ))),
    }
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
        item.map(|i| head_of(partition, &i)).transpose()
    }

    async fn heads(
        &self,
        partitions: &[String],
    ) -> Result<BTreeMap<String, (u64, String)>, StoreError> {
        let items = batch_get(&self.dynamodb, &self.table, partitions).await?;
        let mut heads = BTreeMap::new();
        for (partition, item) in items {
            let head = head_of(&partition, &item)?;
            heads.insert(partition, head);
        }
        Ok(heads)
    }

    async fn chained(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let keys: Vec<String> = ids.iter().map(|id| marker(id)).collect();
        let found = batch_get(&self.dynamodb, &self.table, &keys).await?;
        Ok(ids
            .iter()
            .filter(|id| found.contains_key(&marker(id)))
            .cloned()
            .collect())
    }

    async fn put_segment(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError> {
        // Create-only: a segment or digest, once written, is never replaced
        // (the bucket policy refuses any write without this header). No lock
        // headers: the bucket's default retention applies, and the
        // function's role may not change retention.
        let put = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type("application/x-ndjson")
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(body))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(e) => Err(unavailable(describe(&e))),
        }
    }

    async fn advance(
        &self,
        partition: &str,
        from: Option<u64>,
        to: (u64, &str),
        ids: &[String],
    ) -> Result<Advance, StoreError> {
        let mut head = Put::builder()
            .table_name(&self.table)
            .item("partition", AttributeValue::S(partition.to_owned()))
            .item("seq", AttributeValue::N(to.0.to_string()))
            .item("hash", AttributeValue::S(to.1.to_owned()));
        head = match from {
            None => head
                .condition_expression("attribute_not_exists(#p)")
                .expression_attribute_names("#p", "partition"),
            Some(seq) => head
                .condition_expression("#s = :from")
                .expression_attribute_names("#s", "seq")
                .expression_attribute_values(":from", AttributeValue::N(seq.to_string())),
        };
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + MARKER_DAYS * 86_400;
        let mut writes = vec![TransactWriteItem::builder()
            .put(head.build().map_err(unavailable)?)
            .build()];
        for id in ids {
            let put = Put::builder()
                .table_name(&self.table)
                .item("partition", AttributeValue::S(marker(id)))
                .item("chain", AttributeValue::S(partition.to_owned()))
                .item("seq", AttributeValue::N(to.0.to_string()))
                .item("ttl", AttributeValue::N(expires.to_string()))
                .condition_expression("attribute_not_exists(#p)")
                .expression_attribute_names("#p", "partition")
                .build()
                .map_err(unavailable)?;
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        let result = self
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        let e = match result {
            Ok(_) => return Ok(Advance::Moved),
            Err(e) => e,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            e.as_service_error()
        else {
            return Err(unavailable(describe(&e)));
        };
        let failed = |r: &aws_sdk_dynamodb::types::CancellationReason| {
            r.code() == Some("ConditionalCheckFailed")
        };
        let reasons = cancelled.cancellation_reasons();
        let done: Vec<String> = ids
            .iter()
            .zip(reasons.iter().skip(1))
            .filter(|(_, r)| failed(r))
            .map(|(id, _)| id.clone())
            .collect();
        if !done.is_empty() {
            return Ok(Advance::AlreadyChained(done));
        }
        if reasons.first().is_some_and(failed) {
            return Ok(Advance::Raced);
        }
        Err(unavailable(describe(&e)))
    }
}

type Item = std::collections::HashMap<String, AttributeValue>;

/// The items of `table` under `keys` (values of `partition`), by key: one
/// `BatchGetItem` per hundred keys, with strongly consistent reads.
async fn batch_get(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[String],
) -> Result<BTreeMap<String, Item>, StoreError> {
    let mut found = BTreeMap::new();
    for chunk in keys.chunks(100) {
        let mut pending: Vec<std::collections::HashMap<String, AttributeValue>> = chunk
            .iter()
            .map(|k| {
                std::collections::HashMap::from([(
                    "partition".to_owned(),
                    AttributeValue::S(k.clone()),
                )])
            })
            .collect();
        let mut rounds = 0;
        while !pending.is_empty() {
            rounds += 1;
            if rounds > 10 {
                return Err(unavailable("the chain-head table keeps throttling reads"));
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(unavailable)?;
            let out = dynamodb
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|e| unavailable(describe(&e)))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(table))
                .unwrap_or_default()
            {
                if let Some(k) = item.get("partition").and_then(|v| v.as_s().ok()) {
                    found.insert(k.clone(), item);
                }
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .map(|k| k.keys)
                .unwrap_or_default();
        }
    }
    Ok(found)
}
