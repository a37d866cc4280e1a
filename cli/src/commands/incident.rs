//! `govctl incident timeline --agent A`: one agent's records for incident
//! response (see `governance::audit::timeline`).

use std::path::Path;
use std::process::ExitCode;

use governance::audit::timeline::{render, Collector};
use governance::clock::rfc3339;
use time::OffsetDateTime;

use super::audit::parse_time;
use super::open_store;

/// What `govctl incident timeline` was asked.
pub struct TimelineArgs<'a> {
    /// The data directory.
    pub dir: &'a Path,
    /// The agent.
    pub agent: &'a str,
    /// Only this version of it.
    pub version: Option<&'a str>,
    /// The window's start.
    pub since: &'a str,
    /// Its end; now when `None`.
    pub until: Option<&'a str>,
    /// Print JSON instead of text.
    pub json: bool,
}

/// Prints the timeline; exit 1 when a chain run does not verify.
pub fn timeline(args: &TimelineArgs<'_>) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    let since = parse_time(args.since, now)?;
    let until = match args.until {
        Some(u) => parse_time(u, now)?,
        None => rfc3339(now),
    };
    anyhow::ensure!(
        since < until,
        "`--since` ({since}) must be before `--until` ({until})"
    );
    anyhow::ensure!(
        args.dir
            .join(governance::adapters::sqlite::DB_FILE)
            .exists(),
        "`{}` holds no store: name the data directory of a control plane with --data-dir",
        args.dir.display()
    );
    let store = open_store(args.dir)?;
    let mut collector = Collector::new(args.agent, args.version, &since, &until);
    store.export_audit(&since, &until, &mut |e| {
        collector.push(e);
        Ok(())
    })?;
    for (partition, first, last) in collector.runs() {
        let run = store.chain_run(&partition, first, last)?;
        collector.check(&partition, first, last, run);
    }
    let timeline = collector.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&timeline)?);
    } else {
        print!("{}", render(&timeline));
    }
    Ok(if timeline.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
