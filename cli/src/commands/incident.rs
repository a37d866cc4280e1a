//! `govctl incident timeline --agent A`: one agent's records for incident
//! response (see `governance::audit::timeline`).

use std::path::Path;
use std::process::ExitCode;

use super::audit::window;
use super::trail::Trail;
use governance::audit::timeline::{render, Collector};

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
    /// An export or a copy of the evidence bucket, instead of the store.
    pub file: Option<&'a Path>,
}

/// Prints the timeline; exit 1 when a chain run does not verify.
pub fn timeline(args: &TimelineArgs<'_>) -> anyhow::Result<ExitCode> {
    let (since, until) = window(args.since, args.until)?;
    let trail = Trail::open(args.dir, args.file)?;
    let mut collector = Collector::new(args.agent, args.version, &since, &until);
    trail.each(&since, &until, &mut |e| collector.push(e))?;
    for (partition, first, last) in collector.runs() {
        let run = trail.run(&partition, first, last)?;
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
