//! Where the reports read the audit trail from: a data directory's store,
//! or a file (`--file`): an `audit export`, or a copy of an AWS stack's
//! evidence bucket (`aws s3 sync s3://BUCKET DIR`), which holds every
//! record the stack decided with its chain position.

use std::path::Path;

use anyhow::Context as _;
use governance::adapters::sqlite::SqliteStore;
use governance::audit::export::{parse_line, Line};
use governance::audit::{ChainEntry, SignedDigest};

/// The trail of one report.
pub(crate) enum Trail {
    /// The data directory's store.
    Store(SqliteStore),
    /// The records of a file or directory, every one.
    File(Vec<ChainEntry>),
}

/// The records and digests of `path`: a file, every file under a directory,
/// or standard input for `-`.
pub(crate) fn read(path: &Path) -> anyhow::Result<(Vec<ChainEntry>, Vec<SignedDigest>)> {
    let mut files = Vec::new();
    read_lines(path, &mut files)?;
    let (mut entries, mut digests) = (Vec::new(), Vec::new());
    for (name, text) in &files {
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            match parse_line(line)
                .with_context(|| format!("{name}: line {} is not an exported record", n + 1))?
            {
                Line::Record(e) => entries.push(e),
                Line::Digest(d) => digests.push(d),
            }
        }
    }
    Ok((entries, digests))
}

/// The JSON lines of `path`, file by file.
fn read_lines(path: &Path, into: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    if path == Path::new("-") {
        let text =
            std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?;
        into.push(("standard input".into(), text));
        return Ok(());
    }
    if path.is_dir() {
        let mut children: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        children.sort_by_key(std::fs::DirEntry::path);
        for child in children {
            read_lines(&child.path(), into)?;
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    into.push((path.display().to_string(), text));
    Ok(())
}

/// A record's own time (decisions and control events both carry one).
fn timestamp(e: &ChainEntry) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(&e.body)
        .ok()?
        .get("timestamp")?
        .as_str()
        .map(str::to_owned)
}

impl Trail {
    /// `file` when given, else the store of `dir`, which must exist.
    pub(crate) fn open(dir: &Path, file: Option<&Path>) -> anyhow::Result<Self> {
        match file {
            Some(f) => {
                let (mut entries, _) = read(f)?;
                entries.sort_by(|a, b| (&a.partition, a.seq).cmp(&(&b.partition, b.seq)));
                // A copy may hold a record twice (a redelivered batch): once
                // per position is what the chain says.
                entries.dedup_by(|a, b| a.partition == b.partition && a.seq == b.seq);
                Ok(Trail::File(entries))
            }
            None => Ok(Trail::Store(super::existing_store(dir)?)),
        }
    }

    /// The store, when the trail is one.
    pub(crate) fn store(&self) -> Option<&SqliteStore> {
        match self {
            Trail::Store(s) => Some(s),
            Trail::File(_) => None,
        }
    }

    /// Hands every record of `[since, until)` to `sink`.
    pub(crate) fn each(
        &self,
        since: &str,
        until: &str,
        sink: &mut dyn FnMut(&ChainEntry),
    ) -> anyhow::Result<()> {
        match self {
            Trail::Store(s) => {
                s.export_audit(since, until, &mut |e| {
                    sink(e);
                    Ok(())
                })?;
            }
            Trail::File(entries) => {
                for e in entries {
                    if timestamp(e).is_some_and(|t| t.as_str() >= since && t.as_str() < until) {
                        sink(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// The records of `partition` at positions `first..=last`, in order.
    pub(crate) fn run(
        &self,
        partition: &str,
        first: u64,
        last: u64,
    ) -> anyhow::Result<Vec<ChainEntry>> {
        match self {
            Trail::Store(s) => Ok(s.chain_run(partition, first, last)?),
            Trail::File(entries) => Ok(entries
                .iter()
                .filter(|e| e.partition == partition && e.seq >= first && e.seq <= last)
                .cloned()
                .collect()),
        }
    }
}
