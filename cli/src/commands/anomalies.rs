//! `govctl anomalies`: every agent version's call rate this hour against its
//! 7-day average, and the alerts raised (see `governance::anomaly`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use governance::anomaly::rates;
use governance::audit::ControlEvent;
use governance::ports::PolicyStore;

use super::{existing_store, runtime};

/// Prints the rates and the alerts of the last `days` days.
pub fn run(dir: &Path, days: i64, json: bool) -> anyhow::Result<ExitCode> {
    let store = existing_store(dir)?;
    let now = time::OffsetDateTime::now_utc();
    let registry = runtime()?.block_on(async {
        let Some(active) = store.active().await? else {
            return Ok::<_, anyhow::Error>(None);
        };
        let (_, bundle) = store.version(&active.version_id).await?;
        Ok(governance::policy::compile(&bundle)
            .ok()
            .map(|c| c.registry))
    })?;
    let Some(registry) = registry else {
        println!("no policy version is active in `{}`", dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    let rates = runtime()?.block_on(rates(&store, &registry, now))?;
    let since = governance::clock::rfc3339(now - time::Duration::days(days));
    let alerts: Vec<ControlEvent> = store
        .blocking(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT event FROM control_events
                     WHERE json_extract(event, '$.action') = 'anomaly_detected' AND timestamp >= ?1
                     ORDER BY seq",
                )
                .map_err(|e| governance::ports::StoreError::Unavailable(e.to_string()))?;
            let rows = stmt
                .query_map([&since], |r| r.get::<_, String>(0))
                .map_err(|e| governance::ports::StoreError::Unavailable(e.to_string()))?;
            rows.map(|r| {
                let body =
                    r.map_err(|e| governance::ports::StoreError::Unavailable(e.to_string()))?;
                serde_json::from_str(&body)
                    .map_err(|e| governance::ports::StoreError::Corrupt(e.to_string()))
            })
            .collect()
        })
        .context("cannot read the alerts")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"rates": rates, "alerts": alerts}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<10} {:>10} {:>14} {:>10} {:>10}",
        "AGENT", "VERSION", "THIS HOUR", "7-DAY AVG/H", "RATE", "THRESHOLD"
    );
    for r in &rates {
        let rate = r
            .rate_percent
            .map_or_else(|| "no history".to_owned(), |p| format!("{p:.0}%"));
        println!(
            "{:<28} {:<10} {:>10} {:>14.2} {:>10} {:>9}%{}",
            r.agent_id,
            r.version,
            r.calls_this_hour,
            r.baseline_per_hour,
            rate,
            r.threshold_percent,
            if r.anomalous { "  ANOMALY" } else { "" }
        );
    }
    println!("\nAlerts in the last {days} day(s): {}", alerts.len());
    for a in &alerts {
        println!("  {} {}", a.timestamp, a.message.as_deref().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}
