//! `govctl audit verify | explain | export | digest`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use governance::audit::export::{csv_row, digest_jsonl, jsonl, CSV_HEADER};
use governance::audit::{explain, verify_excerpt, ExcerptChecks, MinDigest, Report, TableHeads};
use governance::auth::LocalKeys;
use governance::clock::rfc3339;
use governance::ports::StoreError;
use indicatif::{ProgressBar, ProgressStyle};
use time::OffsetDateTime;

use super::existing_store;

/// Exports and verifications of at least this many records show a progress bar.
const PROGRESS_FROM: u64 = 10_000;

fn progress(total: u64, what: &str) -> ProgressBar {
    if total < PROGRESS_FROM {
        return ProgressBar::hidden();
    }
    // Drawn on stderr only when it is a terminal: stdout stays the data.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} records ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// The trusted audit key: `--public-key`, else the data directory's key.
fn trusted_key(dir: &Path, explicit: Option<&str>) -> anyhow::Result<Option<[u8; 32]>> {
    if let Some(hex_key) = explicit {
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .context("`--public-key` must be 64 hex digits (an Ed25519 public key)")?;
        return Ok(Some(bytes));
    }
    if dir.join("keys").join("audit-key.pem").exists() {
        return Ok(Some(LocalKeys::audit(dir)?.public_key()));
    }
    Ok(None)
}

/// What `govctl audit verify` was asked.
pub struct VerifyArgs<'a> {
    /// The data directory.
    pub dir: &'a Path,
    /// `--public-key`.
    pub public_key: Option<&'a str>,
    /// `--min-digest`: a digest number or hash.
    pub min_digest: Option<&'a str>,
    /// `--json`.
    pub json: bool,
    /// `--file`: an export or a copy of the evidence bucket.
    pub file: Option<&'a Path>,
    /// `--chain-table`.
    pub chain_table: Option<&'a str>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<&'a str>,
}

/// `govctl audit verify`: exit 0 when intact, 1 when tampered with.
pub fn verify(args: &VerifyArgs<'_>) -> anyhow::Result<ExitCode> {
    let kept = args
        .min_digest
        .map(str::parse::<MinDigest>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("`--min-digest`: {e}"))?;
    if let Some(path) = args.file {
        return verify_file(path, args, kept);
    }
    let store = existing_store(args.dir)?;
    let key = trusted_key(args.dir, args.public_key)?;
    let bar = progress(store.audit_records()?, "verifying");
    let report = store.verify_audit(key, kept, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, key.is_some());
    }
    Ok(exit(&report))
}

fn exit(report: &Report) -> ExitCode {
    if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `govctl audit verify --file`: an export or a copy of the evidence bucket.
fn verify_file(
    path: &Path,
    args: &VerifyArgs<'_>,
    kept: Option<MinDigest>,
) -> anyhow::Result<ExitCode> {
    let (entries, digests) = super::trail::read(path)?;
    let trusted_key = match args.public_key {
        Some(_) => trusted_key(args.dir, args.public_key)?,
        None => None,
    };
    let heads = match args.chain_table {
        Some(table) => Some(chain_heads(table, args.endpoint_url)?),
        None => None,
    };
    let checks = ExcerptChecks {
        trusted_key,
        kept,
        heads,
    };
    let (report, set_aside) = verify_excerpt(entries, digests, &checks);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if set_aside > 0 {
            println!(
                "{set_aside} records or digests set aside: they lost the race for their chain's head and are on the chain as written again"
            );
        }
        for (partition, chain) in &report.chains {
            println!(
                "chain {partition}: #{} to #{}",
                (chain.head_seq + 1).saturating_sub(chain.records),
                chain.head_seq
            );
        }
        if let Some(table) = args.chain_table {
            println!("held to the heads in {table}");
        }
        print_report(&report, checks.trusted_key.is_some());
    }
    Ok(exit(&report))
}

#[cfg(feature = "aws")]
fn chain_heads(table: &str, endpoint_url: Option<&str>) -> anyhow::Result<TableHeads> {
    use governance::adapters::aws::{aws_sdk_dynamodb, evidence::table_heads, sdk_config};
    super::runtime()?.block_on(async {
        let sdk = sdk_config(endpoint_url).await;
        table_heads(&aws_sdk_dynamodb::Client::new(&sdk), table)
            .await
            .with_context(|| format!("cannot read the chain heads in `{table}`"))
    })
}

#[cfg(not(feature = "aws"))]
fn chain_heads(_: &str, _: Option<&str>) -> anyhow::Result<TableHeads> {
    Err(super::without_aws())
}

fn print_report(r: &Report, signed: bool) {
    let chains = r.chains.len();
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    println!(
        "{} in {}, {}{}",
        plural(r.records, "record", "records"),
        plural(chains as u64, "chain", "chains"),
        plural(r.digests, "digest", "digests"),
        if r.wrong_key.is_some() {
            " (intact, but not signed by this key)"
        } else if signed {
            " (signatures checked against the audit key)"
        } else if r.digests > 0 {
            " (no audit key: signatures not checked)"
        } else {
            ""
        }
    );
    if let Some(at) = &r.newest_digest_at {
        println!(
            "newest digest {at}; {} records after it, protected by their chains until the next digest",
            r.records_after_newest_digest
        );
    }
    if r.is_intact() {
        println!("OK: every link and digest verifies");
        return;
    }
    if let Some(wrong) = &r.wrong_key {
        println!("WRONG KEY: {wrong}; check --public-key");
        if r.findings.is_empty() {
            println!(
                "every link verifies: nothing else is wrong, but nothing is vouched for either"
            );
            return;
        }
    }
    println!(
        "TAMPERED: {}",
        plural(r.findings.len() as u64, "problem", "problems")
    );
    for (i, f) in r.first_broken_links().into_iter().enumerate() {
        let label = if i == 0 { "first broken link" } else { "also" };
        println!("  {label}: {f}");
    }
}

/// `govctl audit explain ID`.
pub fn explain(dir: &Path, id: &str) -> anyhow::Result<ExitCode> {
    let store = existing_store(dir)?;
    let id = super::decision_id(&store, dir, id)?;
    let story = store
        .story(&id)?
        .with_context(|| format!("no decision `{id}` in `{}`", dir.display()))?;
    print!("{}", explain::render(&story));
    Ok(if story.tampered.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `govctl audit digest`.
pub fn digest(dir: &Path, copy_to: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = existing_store(dir)?;
    let keys = LocalKeys::audit(dir)?;
    match store.write_digest(&keys, OffsetDateTime::now_utc())? {
        Some(d) => println!(
            "digest #{} sealed {} records in {} chains",
            d.digest_seq,
            d.records,
            d.heads.len()
        ),
        None => println!("nothing new to seal"),
    }
    if let Some(newest) = store
        .audit_digests(&rfc3339(
            OffsetDateTime::now_utc() + time::Duration::seconds(1),
        ))?
        .pop()
    {
        // Kept elsewhere, the newest digest's hash lets a later verification
        // notice that the digests after it, and the records they sealed,
        // were cut.
        println!(
            "newest digest: {} (keep it; verify with --min-digest {})",
            newest.hash, newest.hash
        );
        if let Some(path) = copy_to {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open `{}`", path.display()))?;
            writeln!(file, "{}", digest_jsonl(&newest)?)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            println!("appended to {}", path.display());
        }
    }
    // Kept elsewhere, the public key lets a verifier trust the digests even
    // if someone can write to this data directory.
    println!(
        "audit key (verify with --public-key): {}",
        hex::encode(keys.public_key())
    );
    Ok(ExitCode::SUCCESS)
}

/// `--since`'s default: the whole trail.
pub const WHOLE_TRAIL: &str = "1970-01-01";

/// What `govctl audit export` was asked.
pub struct ExportArgs<'a> {
    /// The data directory.
    pub dir: &'a Path,
    /// Start, inclusive.
    pub since: &'a str,
    /// End, exclusive.
    pub until: Option<&'a str>,
    /// `jsonl` or `csv`.
    pub format: &'a str,
    /// Output file.
    pub output: Option<&'a Path>,
}

/// `govctl audit export`.
pub fn export(args: &ExportArgs<'_>) -> anyhow::Result<ExitCode> {
    let (since, until) = window(args.since, args.until)?;
    let store = existing_store(args.dir)?;
    let out: Box<dyn Write> = match args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create `{}`", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(out);
    let bar = progress(store.audit_count(&since, &until)?, "exporting");
    let io = |e: std::io::Error| StoreError::Unavailable(format!("cannot write the export: {e}"));
    let n = if args.format == "csv" {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(CSV_HEADER)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let n = store.export_audit(&since, &until, &mut |e| {
            let row = csv_row(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            w.write_record(&row)
                .map_err(|e| StoreError::Unavailable(format!("cannot write the export: {e}")))?;
            bar.inc(1);
            Ok(())
        })?;
        w.flush().map_err(io)?;
        n
    } else {
        let n = store.export_audit(&since, &until, &mut |e| {
            let line = jsonl(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            writeln!(out, "{line}").map_err(io)?;
            bar.inc(1);
            Ok(())
        })?;
        // The digests go with an export of the whole trail, whose chains
        // they seal: an export of a time range holds only part of them.
        if args.since == WHOLE_TRAIL {
            let digests = store.audit_digests(&until)?;
            for d in &digests {
                writeln!(out, "{}", digest_jsonl(d)?).map_err(io)?;
            }
            eprintln!("with {} signed digests", digests.len());
        }
        n
    };
    out.flush().context("cannot write the export")?;
    bar.finish_and_clear();
    eprintln!("exported {n} records from {since} to {until}");
    Ok(ExitCode::SUCCESS)
}

/// RFC 3339, a date (midnight UTC), or an age before `now` (`90m`, `24h`,
/// `30d`), as the store's timestamp format, which sorts as text.
/// The window `[since, until)` a command was given (`until` defaults to
/// now), as RFC 3339 strings; an empty or reversed window is refused.
pub(crate) fn window(since: &str, until: Option<&str>) -> anyhow::Result<(String, String)> {
    let now = OffsetDateTime::now_utc();
    let since = parse_time(since, now).context("`--since`")?;
    let until = match until {
        Some(u) => parse_time(u, now).context("`--until`")?,
        None => rfc3339(now),
    };
    anyhow::ensure!(
        since < until,
        "`--since` ({since}) must be before `--until` ({until})"
    );
    Ok((since, until))
}

fn parse_time(s: &str, now: OffsetDateTime) -> anyhow::Result<String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(rfc3339(t));
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date) {
        return Ok(rfc3339(d.midnight().assume_utc()));
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits
        .parse()
        .ok()
        .filter(|_| !digits.is_empty())
        .with_context(|| {
            format!("`{s}` is not a time: use RFC 3339, YYYY-MM-DD, or an age like 90m, 24h, 30d")
        })?;
    let age = match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => anyhow::bail!(
            "`{s}` is not a time: use RFC 3339, YYYY-MM-DD, or an age like 90m, 24h, 30d"
        ),
    };
    Ok(rfc3339(now - age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_form() {
        let now = OffsetDateTime::from_unix_timestamp(1_767_787_200).unwrap();
        assert_eq!(
            parse_time("2026-01-07T12:00:00Z", now).unwrap(),
            "2026-01-07T12:00:00.000Z"
        );
        assert_eq!(
            parse_time("2026-01-07", now).unwrap(),
            "2026-01-07T00:00:00.000Z"
        );
        assert_eq!(parse_time("90m", now).unwrap(), "2026-01-07T10:30:00.000Z");
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("5w", now).is_err());
    }
}
