//! `auditlog`: the command-line tool, a thin layer over the library's public API.
//!
//! Exit codes: 0 success, 1 findings, 2 usage or I/O errors. A closed standard output
//! (`| head`) is a quiet end, with the exit code of what was checked up to then (`verify`
//! and `stats` check everything before printing: theirs is the whole verdict), except for
//! `append --receipts` (exit 2: the lines after it are not appended). Nothing here panics on
//! a closed stdout or stderr.

mod cli {
    pub(crate) mod strict_json;
    pub(crate) mod visible;
}

use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auditlog::checkpoint::Checkpoint;
use auditlog::workload::{Workload, WorkloadConfig};
use auditlog::{DamageKind, Durability, Event, Keyring, Log, Options, OrgId, Timestamp};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "auditlog", version, about = "Tamper-evident audit log storage")]
struct Cli {
    /// Log directory [default: $AUDITLOG_DIR, when set and not empty].
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Key file (JSON, mode 0600) [default: $AUDITLOG_KEYRING, when set and not empty].
    #[arg(long, global = true)]
    keyring: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage org keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Append JSON-lines events from standard input, one event per line (at most 1 MiB
    /// once encoded). Stops at the first line that is not UTF-8, not a JSON event, not a
    /// valid event, too large, or that the log refuses (an org without a key, an archived
    /// month): exit 2 naming the line, every line before it appended (and receipted).
    ///
    /// JSON that would not be stored as written is refused as well: a key twice in one
    /// object (at any depth), an integer outside -2^63..2^64-1, a float too large for 64
    /// bits or not zero but too small to be stored as anything but 0 (ordinary rounding,
    /// 0.1, is kept). A line is read at most 8 MiB far (8 times the largest event); a
    /// longer one is refused without reading the rest. A UTF-8 byte order mark is skipped
    /// at the start of the input only. The log directory is created if missing, but not
    /// its parent. What recovery did is printed on stderr, one line each:
    /// `auditlog: recovery: ` and a JSON object.
    Append {
        /// Durability of each append. With interval or never, what was appended is fsynced
        /// when the command ends (a failure then is exit 2), and with --receipts before each
        /// batch's receipts are printed.
        #[arg(long, value_enum, default_value_t = DurabilityArg::Always)]
        durability: DurabilityArg,
        /// Print one JSON receipt per event once it is durable (fsynced), whatever
        /// --durability says: with interval or never, each batch is fsynced before its
        /// receipts are printed. If standard output closes, appending stops there (exit 2);
        /// if it is closed or /dev/null from the start, nothing is appended (exit 2).
        #[arg(long)]
        receipts: bool,
        /// JSON pointers of personal data inside before/after/metadata (repeatable).
        #[arg(long = "personal-data", value_name = "POINTER")]
        personal_data: Vec<String>,
        /// Segment writers kept open (default 256); beyond it the least recently used are
        /// parked or closed. Raise it above the (org, month) pairs appended to at once.
        #[arg(long, value_name = "N")]
        max_open_writers: Option<usize>,
    },
    /// Events, bytes and time range per org and month, from the segment files (no tag
    /// checks). Records after a damaged stretch are still counted; each stretch (a header
    /// that fails its checks is one) is named on stderr (file and byte range; run verify to
    /// learn what it is) and the exit code is 1, as for a segment name that is not a regular
    /// file (not counted), a segment file missing beside an index that says it held records,
    /// an org entry that is a symbolic link (not counted), records dated outside their
    /// file's month or in a segment whose header names another org or month (a segment
    /// renamed, swapped or copied in), and a directory that is not a log (no segment, and
    /// entries a log does not have). A segment of a newer format than this build reads is
    /// named on stderr and not counted (the others are), exit 2.
    Stats {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the reference workload as JSON lines.
    Gen {
        /// Number of events.
        #[arg(long, default_value_t = 1000)]
        events: u64,
        /// Number of orgs (at most 1,000,000).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        orgs: u32,
        /// Days spanned.
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        /// PRNG seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First event time (RFC 3339 or YYYY-MM-DD). Every event must fall in
        /// 1970-01-01..=9999-12-31, as `append` requires: some are stamped up to an hour
        /// before --start, and the last is before --start plus --days, so --start is at
        /// least 1970-01-01T01:00:00Z and at most 10000-01-01 minus --days.
        #[arg(long, default_value = "2026-01-01")]
        start: Timestamp,
    },
    /// Verify every record, index, link (and checkpoint) of a log. Exit 0 intact (warnings
    /// only, such as quarantined data, included), 1 error findings (a segment or index of a newer format than this build reads is the error finding
    /// `unsupported_format`: nothing in it was verified).
    Verify {
        /// Only this org.
        #[arg(long)]
        org: Option<String>,
        /// Checkpoint file (JSON lines from `auditlog checkpoint`) the log must still contain.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Segments verified at once (default: one per core; at most 64). Memory is a few MB
        /// per thread.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
    },
    /// Print a signed checkpoint (every segment's chain head) per org, to store elsewhere.
    /// An org that does not verify is refused (named on stderr) and the others are still
    /// printed: the lines printed are for the orgs that passed. Exit 0 all printed, 1 some
    /// refused for findings, 2 usage or I/O error (an org that cannot be read is named and
    /// the others are still printed).
    Checkpoint {
        /// Only this org.
        #[arg(long)]
        org: Option<String>,
        /// Sign even if bytes fail their checksum or end torn (bit rot, crash damage, also
        /// after recovery sealed a damaged part): each segment is pinned up to its first
        /// damage. Tampering (chain, tags, links, missing segments) still refuses.
        #[arg(long)]
        accept_damage: bool,
    },
    /// Show one segment or index file record by record, offline; damaged ranges are shown
    /// and skipped. Exit 0 if all it showed is intact; 1 if it showed a damaged range, a
    /// record whose body does not decode, a chain break, a tag that fails, or (with
    /// --keyring) a tag the keyring has no key for (tags are checked with --keyring only).
    /// The incomplete last record of a month's latest part, while a writer holds the log's
    /// lock, is shown as being written, not as damage. Control, bidirectional and invisible characters are shown escaped (\u{202e}) in
    /// text output. An index file over 256 MiB, a file of a newer format
    /// than this build reads, and anything but a regular file (a FIFO would block) are
    /// refused (exit 2).
    Inspect {
        /// The file.
        file: PathBuf,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// Start at this byte offset (resynchronising to the next record). Segment files
        /// only (an index is shown whole).
        #[arg(long)]
        from_offset: Option<u64>,
        /// Show at most this many records (segment files only).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Append, read back and verify a generated workload, then tamper with a copy and show
    /// verification catching it. Runs in a scratch directory removed after; with --dir (or
    /// AUDITLOG_DIR), in that directory, which must be new or empty, and where the demo's
    /// keyring.json (secret keys), keyring.json.lock, log/ and tampered/ are left.
    Demo {
        /// Number of events (at least 1000: the demo tampers with the 11th record of
        /// org-000's first month).
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
    /// Events of one org in a time range, filtered, oldest first, each record verified on
    /// read. Exit 0, or 1 if a record failed a check (reported on stderr, with how many
    /// matching records after it were withheld), or 2 if a segment is of a newer format
    /// than this build reads (named on stderr; the other segments' events are still
    /// printed) or if the keyring has no key for the org (without --unverified).
    Query(QueryArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for an org, or rotate to a new one (old keys stay for verification).
    New {
        /// The org.
        #[arg(long)]
        org: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Always,
    Interval,
    Never,
}

/// A failure to report: message, and exit code.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Set once writing to standard output failed with a broken pipe (`| head`): the command
/// then ends quietly with exit 0, as when the reader took everything it wanted.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Standard output that notes a broken pipe in [`STDOUT_CLOSED`].
struct Stdout(io::StdoutLock<'static>);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(stdout_error)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(stdout_error)
    }
}

/// A failed write to standard output: a broken pipe is noted in [`STDOUT_CLOSED`]; every
/// error says it was standard output that failed (`> /dev/full`).
fn stdout_error(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
    io::Error::new(e.kind(), format!("write to standard output: {e}"))
}

/// The end of a command whose verdict is `verdict` once its output is written: a closed
/// standard output (`| head`) ends it quietly with that verdict all the same; any other
/// failed write is an error.
fn finish(written: io::Result<()>, verdict: ExitCode) -> Result<ExitCode, Failure> {
    match written {
        Ok(()) => Ok(verdict),
        Err(_) if STDOUT_CLOSED.load(Ordering::Relaxed) => Ok(verdict),
        Err(e) => Err(e.into()),
    }
}

/// Buffered standard output.
fn stdout() -> BufWriter<Stdout> {
    BufWriter::new(Stdout(io::stdout().lock()))
}

/// A message on standard error; never fails (a closed stderr leaves nowhere to report to).
/// Control, bidirectional and invisible characters are escaped ([`cli::visible::visible`]):
/// messages name files, and a file name planted in a log could otherwise carry terminal
/// escapes that hide the lines after it.
fn warn(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "{}", cli::visible::visible(&msg.to_string()));
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match flags_without_effect(&cli).and_then(|()| {
        cli.dir = cli.dir.take().or_else(|| from_env("AUDITLOG_DIR"));
        cli.keyring = cli.keyring.take().or_else(|| from_env("AUDITLOG_KEYRING"));
        run(cli)
    }) {
        Ok(code) => code,
        Err(Failure(msg)) => {
            if STDOUT_CLOSED.load(Ordering::Relaxed) {
                // `| head`: the reader left; not a failure of the command.
                return ExitCode::SUCCESS;
            }
            warn(format_args!("auditlog: {msg}"));
            ExitCode::from(2)
        }
    }
}

/// The path in environment variable `name`, when it is set and not empty. Read here rather
/// than by clap's `env`, which takes `AUDITLOG_DIR=` (set, empty) for a flag given no value
/// and refused every command with "a value is required for '--dir <DIR>'", even commands
/// that use no directory.
fn from_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Refuses `--dir` or `--keyring` typed on the command line for a command that does not use
/// it: accepted and ignored, `--keyring` on `stats` looked as if the counts were checked
/// against the keys (they are not: `verify` checks tags). Runs before the environment
/// (`AUDITLOG_DIR`, `AUDITLOG_KEYRING`) fills them in: those are set for every command, and
/// ignored where unused.
fn flags_without_effect(cli: &Cli) -> Result<(), Failure> {
    let (name, dir, keyring) = match &cli.command {
        Command::Keys { .. } => ("keys new", Some("it writes only the keyring"), None),
        Command::Stats { .. } => (
            "stats",
            None,
            Some("it counts records without checking their tags (verify checks them)"),
        ),
        Command::Gen { .. } => (
            "gen",
            Some("it only prints events"),
            Some("it only prints events"),
        ),
        Command::Inspect { .. } => ("inspect", Some("it reads the file it is given"), None),
        Command::Demo { .. } => (
            "demo",
            None,
            Some("it makes its own keyring, in its directory"),
        ),
        Command::Append { .. }
        | Command::Verify { .. }
        | Command::Checkpoint { .. }
        | Command::Query(_) => return Ok(()),
    };
    for (flag, why, typed) in [
        ("dir", dir, cli.dir.is_some()),
        ("keyring", keyring, cli.keyring.is_some()),
    ] {
        if let Some(why) = why
            && typed
        {
            return Err(Failure(format!("--{flag} has no effect on {name}: {why}")));
        }
    }
    Ok(())
}

/// Microseconds in an hour: how much earlier than its place an out-of-order event of the
/// reference workload may be stamped ([`WorkloadConfig::out_of_order`]).
const HOUR_MICROS: i64 = 3_600_000_000;

/// Refuses a `gen` range with events outside what `append` accepts (1970-01-01 to
/// 9999-12-31): the workload stamps events from `start` to before `start + days`, some up
/// to an hour early.
fn check_gen_range(cfg: &WorkloadConfig) -> Result<(), Failure> {
    use auditlog::time::{MAX_TIMESTAMP, MIN_TIMESTAMP};
    let span = i128::from(cfg.days) * 86_400_000_000;
    let start = i128::from(cfg.start.micros());
    let earliest = start - i128::from(HOUR_MICROS);
    let latest = start + span - 1;
    if earliest >= i128::from(MIN_TIMESTAMP.micros())
        && latest <= i128::from(MAX_TIMESTAMP.micros())
    {
        return Ok(());
    }
    let last_start = i128::from(MAX_TIMESTAMP.micros()) + 1 - span;
    let last_start = i64::try_from(last_start)
        .ok()
        .map(Timestamp)
        .filter(|t| *t >= Timestamp(HOUR_MICROS))
        .map_or_else(
            || format!("no --start fits {} days", cfg.days),
            |t| format!("--start must be in {}..={t}", Timestamp(HOUR_MICROS)),
        );
    Err(Failure(format!(
        "--start {} with --days {}: events would fall outside 1970-01-01..=9999-12-31, which append refuses (some are stamped up to an hour before --start, the last just before --start plus --days); {last_start}",
        cfg.start, cfg.days
    )))
}

fn need<'a>(p: &'a Option<PathBuf>, what: &str, env: &str) -> Result<&'a Path, Failure> {
    p.as_deref()
        .ok_or_else(|| Failure(format!("{what} is required (--{what} or {env})")))
}

/// `--dir` of a command that reads a log: it must exist (only `append` creates one).
fn existing_dir(p: &Option<PathBuf>) -> Result<&Path, Failure> {
    let dir = need(p, "dir", "AUDITLOG_DIR")?;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        Ok(_) => Err(Failure(format!("{}: not a directory", dir.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(Failure(format!("{}: no such log directory", dir.display())))
        }
        Err(e) => Err(Failure(format!("{}: {e}", dir.display()))),
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Keys {
            command: KeysCommand::New { org },
        } => {
            let path = need(&cli.keyring, "keyring", "AUDITLOG_KEYRING")?;
            let org = OrgId::new(&org)?;
            let ring = Keyring::open_or_create(path)?;
            let id = ring.rotate(&org)?;
            let done = format!("org {org}: signing key {id} (keyring {})", path.display());
            let mut out = stdout();
            let written = writeln!(out, "{done}").and_then(|()| out.flush());
            // The key exists whatever happens to the message: a failure says so, so that
            // nobody runs the command again and rotates a second time.
            if let Err(e) = finish(written, ExitCode::SUCCESS) {
                return Err(Failure(format!(
                    "{} (the rotation itself was done: {done})",
                    e.0
                )));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Append {
            durability,
            receipts,
            personal_data,
            max_open_writers,
        } => {
            let dir = need(&cli.dir, "dir", "AUDITLOG_DIR")?;
            let keyring = need(&cli.keyring, "keyring", "AUDITLOG_KEYRING")?;
            if receipts && stdout_is_dev_null() {
                return Err(Failure(
                    "--receipts: standard output is closed or /dev/null, so no receipt could be read; nothing was appended"
                        .into(),
                ));
            }
            let keys = Arc::new(Keyring::open(keyring)?);
            let durability = match durability {
                DurabilityArg::Always => Durability::Always,
                DurabilityArg::Interval => Durability::Interval(Duration::from_millis(100)),
                DurabilityArg::Never => Durability::Never,
            };
            let mut opts = Options::new(keys)
                .durability(durability)
                .personal_data(personal_data);
            if let Some(n) = max_open_writers {
                opts = opts.max_open_writers(n);
            }
            let max_line = max_line(opts.max_event_size);
            let log = Log::open(dir, opts)?;
            // A receipt says its event is durable: under interval or never, the batch is
            // fsynced before its receipts are printed (they used to be printed while the
            // events were still in this process's buffer).
            let sync_first = !matches!(durability, Durability::Always);
            let result = append_stdin(&log, receipts, sync_first, max_line);
            // Not a quiet end: the lines after the closed pipe were not appended.
            STDOUT_CLOSED.store(false, Ordering::Relaxed);
            // What recovery did, at open or when a month was first written: the operator
            // must hear of quarantined bytes, sealed segments and months it could not open.
            for a in log.recovery_report() {
                warn(format_args!(
                    "auditlog: recovery: {}",
                    serde_json::to_string(&a).unwrap_or_else(|_| format!("{a:?}"))
                ));
            }
            // The reason appending stopped (the line to resume at) is kept when closing
            // fails as well: the close error used to replace it.
            let closed = log.close().map_err(|e| {
                let unsure = if sync_first && !receipts {
                    "; lines appended under --durability interval or never may not all be on disk"
                } else {
                    ""
                };
                format!("closing the log: {e}{unsure}")
            });
            match (result, closed) {
                (Ok(()), Ok(())) => Ok(ExitCode::SUCCESS),
                (Err(f), Ok(())) => Err(f),
                (Ok(()), Err(c)) => Err(Failure(c)),
                (Err(f), Err(c)) => Err(Failure(format!("{}; then {c}", f.0))),
            }
        }
        Command::Stats { json } => {
            let dir = existing_dir(&cli.dir)?;
            let keys = Arc::new(Keyring::in_memory());
            let log = Log::open_read_only(dir, Options::new(keys))?;
            let stats = log.stats()?;
            let mut out = stdout();
            let written = (|| -> io::Result<()> {
                if json {
                    for s in &stats {
                        serde_json::to_writer(&mut out, s)?;
                        writeln!(out)?;
                    }
                } else {
                    writeln!(
                        out,
                        "{:<20} {:<8} {:>4} {:>10} {:>12}  {:<27} {:<27}",
                        "org", "month", "segs", "events", "bytes", "first", "last"
                    )?;
                    for s in &stats {
                        let t = |t: Option<Timestamp>| {
                            t.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
                        };
                        writeln!(
                            out,
                            "{:<20} {:<8} {:>4} {:>10} {:>12}  {:<27} {:<27}",
                            s.org_id,
                            s.month.to_string(),
                            s.segments,
                            s.events,
                            s.bytes,
                            t(s.first),
                            t(s.last)
                        )?;
                    }
                }
                out.flush()
            })();
            let damage: Vec<&auditlog::StatsDamage> =
                stats.iter().flat_map(|s| &s.damage).collect();
            for d in &damage {
                let file = d.file.display();
                if d.kind == DamageKind::NotAFile {
                    warn(format_args!(
                        "auditlog: {file}: not a regular file; not counted (run verify)"
                    ));
                } else if d.kind == DamageKind::Missing {
                    warn(format_args!(
                        "auditlog: {file}: missing, but its index or the part continuing it says it held records (deleted or moved?); not counted (run verify)"
                    ));
                } else if d.kind == DamageKind::NewerFormat {
                    warn(format_args!(
                        "auditlog: {file}: needs a newer reader (a newer format than this build reads); not counted (use a newer auditlog)"
                    ));
                } else if d.end == 0 {
                    warn(format_args!(
                        "auditlog: {file}: empty (not even a header); no records (run verify)"
                    ));
                } else {
                    warn(format_args!(
                        "auditlog: {file}: bytes {}..{} do not read as records; counted around them (run verify)",
                        d.start, d.end
                    ));
                }
            }
            let newer = damage.iter().any(|d| d.kind == DamageKind::NewerFormat);
            // No segment anywhere, and entries a log does not have: the wrong directory,
            // not an empty log (verify's `not_a_log`).
            let not_a_log = stats.is_empty() && auditlog::verify::not_a_log(dir, None)?;
            if not_a_log {
                warn(format_args!(
                    "auditlog: {}: {}",
                    dir.display(),
                    auditlog::verify::NOT_A_LOG
                ));
            }
            // Org entries that are not directories (a symbolic link): not counted, named.
            let mut unusable = false;
            for org in auditlog::verify::orgs(dir)? {
                let path = dir.join(org.as_str());
                if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                    unusable = true;
                    warn(format_args!(
                        "auditlog: {}: org {org} is not a directory (a symbolic link); not counted (run verify)",
                        path.display()
                    ));
                }
            }
            let mut misfiled = false;
            for s in stats.iter().filter(|s| s.misfiled > 0) {
                misfiled = true;
                warn(format_args!(
                    "auditlog: org {} {}: {} record(s) dated outside the month or in a segment whose header names another org or month (a segment renamed, swapped or copied in; run verify)",
                    s.org_id, s.month, s.misfiled
                ));
            }
            finish(
                written,
                if newer {
                    ExitCode::from(2)
                } else if damage.is_empty() && !misfiled && !unusable && !not_a_log {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                },
            )
        }
        Command::Gen {
            events,
            orgs,
            days,
            seed,
            start,
        } => {
            let cfg = WorkloadConfig {
                events,
                orgs,
                days,
                seed,
                start,
                ..WorkloadConfig::default()
            };
            check_gen_range(&cfg)?;
            let mut out = stdout();
            for e in Workload::new(cfg) {
                serde_json::to_writer(&mut out, &e)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { events } => demo(cli.dir.as_deref(), events),
        Command::Verify {
            ref org,
            ref checkpoint,
            json,
            threads,
        } => verify_cmd(
            &cli,
            org.clone(),
            checkpoint.clone(),
            json,
            threads.map(usize::from),
        ),
        Command::Checkpoint { org, accept_damage } => {
            let dir = existing_dir(&cli.dir)?;
            let keyring = need(&cli.keyring, "keyring", "AUDITLOG_KEYRING")?;
            let keys = Keyring::open(keyring)?;
            // Every org entry, a symbolic link included: make_checkpoint refuses a linked
            // org (verify's `symbolic_link`), where the log's own list would leave it out.
            let orgs = match org {
                Some(o) => vec![OrgId::new(&o)?],
                None => auditlog::verify::orgs(dir)?,
            };
            let mut out = stdout();
            let mut refused = 0usize;
            // Orgs that could not be read (I/O): named on stderr, the others still printed,
            // exit 2 at the end.
            let mut unread = 0usize;
            for org in orgs {
                let options = auditlog::verify::CheckpointOptions { accept_damage };
                let written =
                    match auditlog::verify::make_checkpoint_with(dir, &org, &keys, &options) {
                        Ok(cp) => writeln!(out, "{}", serde_json::to_string(&cp)?),
                        // A finding, no key to sign with or check by, or a file of a newer
                        // format: refuse this org, go on with the others.
                        Err(
                            e @ (auditlog::Error::Integrity {
                                kind: auditlog::IntegrityKind::FailsVerification { .. },
                                ..
                            }
                            | auditlog::Error::Key { .. }
                            | auditlog::Error::UnsupportedFormat { .. }),
                        ) => {
                            let flushed = out.flush();
                            // A key error names its org already.
                            if matches!(e, auditlog::Error::Key { .. }) {
                                warn(format_args!("auditlog: {e}"));
                            } else {
                                warn(format_args!("auditlog: org {org}: {e}"));
                            }
                            refused += 1;
                            flushed
                        }
                        Err(e) => {
                            let flushed = out.flush();
                            warn(format_args!("auditlog: org {org}: {e}"));
                            unread += 1;
                            flushed
                        }
                    };
                // A reader that left (`| head`): stop quietly, with the verdict on the orgs
                // checked so far, as query and inspect do.
                if written.is_err() {
                    return finish(written, checkpoint_verdict(refused, unread));
                }
            }
            let flushed = out.flush();
            if refused + unread > 0 {
                warn(format_args!(
                    "auditlog: {} org(s) refused{}; the checkpoints printed are those of the orgs that verify",
                    refused + unread,
                    if unread > 0 {
                        format!(", {unread} of them unreadable")
                    } else {
                        String::new()
                    }
                ));
            }
            finish(flushed, checkpoint_verdict(refused, unread))
        }
        Command::Inspect {
            ref file,
            json,
            from_offset,
            limit,
        } => inspect_cmd(&cli, file, json, from_offset, limit),
        Command::Query(ref args) => query_cmd(&cli, args),
    }
}

/// `checkpoint`'s exit code: 2 if an org could not be read, else 1 if one was refused for
/// what it holds, else 0.
fn checkpoint_verdict(refused: usize, unread: usize) -> ExitCode {
    ExitCode::from(if unread > 0 { 2 } else { u8::from(refused > 0) })
}

fn verify_cmd(
    cli: &Cli,
    org: Option<String>,
    checkpoint: Option<PathBuf>,
    json: bool,
    threads: Option<usize>,
) -> Result<ExitCode, Failure> {
    use std::io::IsTerminal;
    let dir = existing_dir(&cli.dir)?;
    let keys = match &cli.keyring {
        Some(k) => Some(Keyring::open(k)?),
        None => None,
    };
    let org = org.map(|o| OrgId::new(&o)).transpose()?;
    let checkpoints = match checkpoint {
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| Failure(format!("{}: {e}", p.display())))?;
            Checkpoint::parse_lines(&text).map_err(|e| Failure(format!("{}: {e}", p.display())))?
        }
        None => Vec::new(),
    };
    let bar = (!json && io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(auditlog::verify::total_bytes(dir, org.as_ref()));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "verifying {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let progress: Option<auditlog::verify::Progress> = bar.clone().map(|b| {
        let f: auditlog::verify::Progress = Arc::new(move |n| b.inc(n));
        f
    });
    let opts = auditlog::verify::VerifyOptions {
        org,
        checkpoints,
        progress,
        threads,
    };
    let report = auditlog::verify::verify(
        dir,
        keys.as_ref().map(|k| k as &dyn auditlog::KeyProvider),
        &opts,
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut out = stdout();
    let written = (|| -> io::Result<()> {
        if json {
            serde_json::to_writer_pretty(&mut out, &VerifyJson::of(&report))?;
            writeln!(out)?;
        } else {
            // Escaped as in `warn`: a planted file name with terminal escapes once hid the
            // ERROR lines and the FAILED summary after it, and drew a fake INTACT line.
            for f in &report.findings {
                writeln!(out, "{}", cli::visible::visible(&f.to_string()))?;
            }
            for l in &report.live {
                let file = l.file.display().to_string();
                writeln!(
                    out,
                    "live: {} verified up to byte {} ({} records)",
                    cli::visible::visible(&file),
                    l.verified_to,
                    l.records
                )?;
            }
            writeln!(out, "{}", report.summary())?;
        }
        out.flush()
    })();
    // The whole log is verified before anything is printed: a reader that leaves early
    // still gets the verdict as the exit code.
    finish(
        written,
        if report.is_intact() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

fn inspect_cmd(
    cli: &Cli,
    file: &Path,
    json: bool,
    from_offset: Option<u64>,
    limit: Option<u64>,
) -> Result<ExitCode, Failure> {
    use auditlog::inspect::{InspectOptions, Item};
    let keys = match &cli.keyring {
        Some(k) => Some(Keyring::open(k)?),
        None => None,
    };
    use auditlog::inspect::TagStatus;
    let mut out = stdout();
    let (mut damaged, mut findings) = (false, false);
    // Tags the keyring has no key for: not checked, so not a pass (as `verify` says
    // unknown_key). The org and key ids, for one message at the end.
    let mut org = String::new();
    let mut unknown: std::collections::BTreeSet<u32> = Default::default();
    let mut unknown_tags = 0u64;
    let inspected = auditlog::inspect::inspect(
        file,
        keys.as_ref().map(|k| k as &dyn auditlog::KeyProvider),
        InspectOptions { from_offset, limit },
        |item| {
            match &item {
                Item::Damage { .. } => damaged = true,
                Item::Record {
                    linked,
                    tag,
                    body_error,
                    key_id,
                    ..
                } => {
                    findings |= body_error.is_some()
                        || *linked == Some(false)
                        || *tag == TagStatus::Invalid;
                    if *tag == TagStatus::UnknownKey {
                        unknown_tags += 1;
                        unknown.insert(*key_id);
                    }
                }
                Item::Index { tag, org_id: o, .. } => {
                    findings |= *tag == TagStatus::Invalid;
                    if *tag == TagStatus::UnknownKey {
                        unknown_tags += 1;
                        org.clone_from(o);
                    }
                }
                Item::SegmentHeader { org_id: o, .. } => org.clone_from(o),
                Item::BeingWritten { .. } => {}
            }
            if json {
                serde_json::to_writer(&mut out, &item)
                    .map_err(io::Error::other)
                    .and_then(|()| writeln!(out))
            } else {
                write_item(&mut out, &item)
            }
        },
    );
    let written = match inspected {
        Ok(shown) if !json => writeln!(
            out,
            "{shown} records shown{}{}",
            if damaged {
                "; damaged ranges were skipped"
            } else {
                ""
            },
            if findings {
                "; some failed a check (body, chain or tag: see above)"
            } else {
                ""
            }
        )
        .and_then(|()| out.flush()),
        Ok(_) => out.flush(),
        // The reader left (`| head`): what was shown up to then decides the exit code.
        Err(_) if STDOUT_CLOSED.load(Ordering::Relaxed) => Ok(()),
        Err(e) => return Err(e.into()),
    };
    if unknown_tags > 0 {
        let ids: Vec<String> = unknown.iter().map(ToString::to_string).collect();
        warn(format_args!(
            "auditlog: {unknown_tags} tag(s) could not be checked: the keyring has no such key for org {}{}",
            org,
            if ids.is_empty() {
                String::new()
            } else {
                format!(" (record key id {})", ids.join(", "))
            }
        ));
    }
    finish(
        written,
        if damaged || findings || unknown_tags > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// One item of `inspect`'s text output. Text from the file is shown through
/// [`cli::visible::visible`]: a bidirectional control in an event cannot reorder the line.
fn write_item(out: &mut impl Write, item: &auditlog::inspect::Item) -> io::Result<()> {
    use auditlog::inspect::Item;
    use cli::visible::visible;
    match item {
        Item::SegmentHeader {
            org_id,
            segment,
            ordinal,
            first_seq,
            created_at,
            prev,
            continues,
            genesis,
        } => {
            writeln!(
                out,
                "segment org={} {} ordinal={ordinal} first_seq={first_seq} created={created_at} genesis={genesis}",
                visible(org_id),
                visible(segment)
            )?;
            writeln!(
                out,
                "  prev={} continues={}",
                visible(prev.as_deref().unwrap_or("-")),
                visible(continues.as_deref().unwrap_or("-"))
            )
        }
        Item::Index {
            org_id,
            segment,
            covered_len,
            record_count,
            head,
            entries,
            tag,
        } => writeln!(
            out,
            "index org={} {} covers {covered_len} bytes, {record_count} records, head={head}, {entries} entries, tag {tag:?}",
            visible(org_id),
            visible(segment)
        ),
        Item::Record {
            offset,
            len,
            seq,
            occurred_at,
            key_id,
            prev_hash,
            hash,
            linked,
            tag,
            event,
            body_error,
        } => {
            let link = match linked {
                Some(true) => "linked",
                Some(false) => "CHAIN BREAK",
                None => "-",
            };
            writeln!(
                out,
                "@{offset}+{len} seq={seq} t={occurred_at} key={key_id} tag={tag:?} {link} prev={prev_hash} hash={hash}"
            )?;
            match (event, body_error) {
                (Some(e), _) => writeln!(
                    out,
                    "  {}",
                    visible(&serde_json::to_string(e).unwrap_or_default())
                ),
                (None, Some(err)) => writeln!(out, "  body: {}", visible(err)),
                (None, None) => Ok(()),
            }
        }
        Item::Damage { start, end, reason } => {
            writeln!(
                out,
                "DAMAGED bytes {start}..{end} ({} bytes): {}",
                end.saturating_sub(*start),
                visible(reason)
            )
        }
        Item::BeingWritten { start, end } => writeln!(
            out,
            "BEING WRITTEN bytes {start}..{end}: an incomplete last record (or header) while a writer holds the log's lock (not damage)"
        ),
    }
}

/// How many times its largest event an input line of `append` may be: JSON escapes can
/// write one byte of an event as six (`\u0041`), and a line may carry some whitespace.
const LINE_FACTOR: u64 = 8;

/// The longest input line `append` reads, in bytes, for events of at most
/// `max_event_size` bytes.
fn max_line(max_event_size: usize) -> u64 {
    u64::try_from(max_event_size)
        .unwrap_or(u64::MAX)
        .saturating_mul(LINE_FACTOR)
}

/// Whether standard output is `/dev/null`, which is also what the Rust runtime opens in
/// place of a closed standard output (`>&-`) before `main` runs.
fn stdout_is_dev_null() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() else {
        return false;
    };
    match (
        std::fs::File::from(fd).metadata(),
        std::fs::metadata("/dev/null"),
    ) {
        (Ok(out), Ok(null)) => {
            out.file_type().is_char_device()
                && null.file_type().is_char_device()
                && out.rdev() == null.rdev()
        }
        _ => false,
    }
}

/// Reads JSON lines; appends them in batches of what is already buffered (so a slow
/// producer is not kept waiting); stops at the first bad line after appending those before.
/// A line is read at most `max_line` bytes far: a longer one is refused without reading
/// (or holding) the rest of it.
fn append_stdin(
    log: &Log,
    print_receipts: bool,
    sync_first: bool,
    max_line: u64,
) -> Result<(), Failure> {
    // Our own buffer, so that whether more input is already here can be asked without
    // waiting for it (`fill_buf` on an empty buffer blocks until the producer writes again:
    // a producer that waits for each receipt before its next line waited for good). 1 MiB
    // holds about 1,500 reference events, so batches still fill to 1,000 from a file.
    let mut input = io::BufReader::with_capacity(1 << 20, io::stdin().lock());
    let mut out = Receipts {
        out: stdout(),
        print: print_receipts,
        sync_first: print_receipts && sync_first,
        appended: 0,
    };
    let mut batch = Batch::default();
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = match io::Read::take(&mut input, max_line.saturating_add(1))
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(e) => {
                // The whole lines read before it are appended first, as before a bad line.
                batch.append(log, &mut out)?;
                return Err(Failure(format!(
                    "reading stdin after line {line_no}: {e}; {}",
                    out.before_this_line()
                )));
            }
        };
        if n == 0 {
            break;
        }
        line_no += 1;
        let bad = if u64::try_from(line.len()).unwrap_or(u64::MAX) > max_line
            && line.last() != Some(&b'\n')
        {
            Some(format!(
                "longer than {max_line} bytes ({LINE_FACTOR} times the largest event); the rest of it was not read"
            ))
        } else {
            match parse_line(&line, line_no == 1) {
                Ok(Some(e)) => {
                    batch.events.push(e);
                    batch.lines.push(line_no);
                    None
                }
                Ok(None) => continue,
                Err(reason) => Some(reason),
            }
        };
        if let Some(reason) = bad {
            batch.append(log, &mut out)?;
            return Err(Failure(format!(
                "line {line_no}: {reason}; {}",
                out.before_this_line()
            )));
        }
        if batch.events.len() >= 1000 || input.buffer().is_empty() {
            batch.append(log, &mut out)?;
        }
    }
    batch.append(log, &mut out)
}

/// The event on one input line, `None` for a blank line, or why the line is refused.
///
/// A UTF-8 byte order mark is skipped at the start of the input (`first`) only. Besides
/// what serde_json refuses and [`Event::validate`] checks, JSON that would not be stored
/// as written is refused ([`cli::strict_json`]): a duplicate key at any depth, an integer
/// outside the 64-bit range, a float that overflows or that is not zero but would be
/// stored as zero.
fn parse_line(line: &[u8], first: bool) -> Result<Option<Event>, String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1))?;
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) if first => rest,
        Some(_) => {
            return Err(
                "starts with a byte order mark (U+FEFF), which is skipped only at the start of the input"
                    .into(),
            );
        }
        None => text,
    };
    // JSON's whitespace only: a line of other Unicode spaces (U+00A0, form feed...) is
    // not blank, and is refused as malformed rather than skipped without a word.
    if text.trim_matches([' ', '\t', '\r', '\n']).is_empty() {
        return Ok(None);
    }
    // Without its line end, serde_json's errors point into the line (an incomplete object
    // is missing something at its last column, not on a second line).
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let event = serde_json::from_str::<Event>(text).map_err(|e| {
        // A float too large for an f64 is valid JSON that serde_json cannot hold: say so
        // as the check below would.
        match cli::strict_json::check(text) {
            Err(overflow @ cli::strict_json::Altered::FloatOverflow { .. }) => {
                format!("invalid event: {overflow}")
            }
            _ => json_error(&e),
        }
    })?;
    cli::strict_json::check(text).map_err(|e| format!("invalid event: {e}"))?;
    event
        .validate()
        .map_err(|e| format!("invalid event: {e}"))?;
    Ok(Some(event))
}

/// serde_json's error without its line number (an input line is one JSON text: its line
/// is always 1), with the byte column, and called what it is: text that is not JSON, or
/// JSON that is not a valid event.
fn json_error(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    let what = match e.classify() {
        serde_json::error::Category::Data => "invalid event",
        _ => "malformed JSON",
    };
    if e.line() == 0 {
        format!("{what}: {msg}")
    } else {
        format!("{what}: {msg} (column {})", e.column())
    }
}

/// Where `append --receipts` prints, and how many events were appended.
struct Receipts {
    out: BufWriter<Stdout>,
    print: bool,
    /// Fsync what was appended before printing its receipts (durability other than
    /// `Always`).
    sync_first: bool,
    appended: u64,
}

impl Receipts {
    /// Counts `receipts` as appended and prints them if asked to.
    fn print(&mut self, receipts: &[auditlog::Receipt]) -> Result<(), Failure> {
        self.appended = self
            .appended
            .saturating_add(u64::try_from(receipts.len()).unwrap_or(u64::MAX));
        if !self.print {
            return Ok(());
        }
        receipts
            .iter()
            .try_for_each(|r| {
                serde_json::to_writer(&mut self.out, r)?;
                self.out.write_all(b"\n")
            })
            .and_then(|()| self.out.flush())
            .map_err(|e| Failure(format!("receipts: {e}")))
    }

    /// What became of the input before a refused line.
    fn before_this_line(&self) -> &'static str {
        if self.appended == 0 {
            "no line was appended"
        } else {
            "the lines before it were appended"
        }
    }
}

/// Events read but not yet appended, with their input line numbers.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    lines: Vec<u64>,
}

impl Batch {
    /// Appends the batch and prints its receipts. If the log refuses one event (see
    /// `auditlog::Error::is_refusal`), the events before it are appended and receipted and the
    /// error names its line. After any other error nothing is retried (the events may be on
    /// disk already, and a retry could append them twice).
    fn append(&mut self, log: &Log, out: &mut Receipts) -> Result<(), Failure> {
        let result = append_up_to_refusal(log, &self.events, out);
        let (first, last) = (
            self.lines.first().copied().unwrap_or(0),
            self.lines.last().copied().unwrap_or(0),
        );
        let result = match result {
            Ok(()) => Ok(()),
            Err(Stop::Refused(i, e)) => Err(Failure(format!(
                "line {}: {e}; {}",
                self.lines.get(i).copied().unwrap_or(first),
                out.before_this_line()
            ))),
            Err(Stop::Failed(e)) => Err(Failure(format!(
                "appending lines {first}..={last}: {e}; some of them may be on disk, none was acknowledged ({})",
                if out.appended == 0 {
                    "no line before them was appended".to_string()
                } else {
                    format!("the lines before {first} were appended")
                }
            ))),
            Err(Stop::Output(e)) => Err(Failure(format!(
                "{}; lines {first}..={last} were appended, and none after them",
                e.0
            ))),
        };
        self.events.clear();
        self.lines.clear();
        result
    }
}

/// Why [`append_up_to_refusal`] stopped.
enum Stop {
    /// The event at this index was refused; those before it are appended.
    Refused(usize, Box<auditlog::Error>),
    /// Anything else: what was written is unknown.
    Failed(Box<auditlog::Error>),
    /// Printing receipts failed.
    Output(Failure),
}

/// Appends `events` in order, printing receipts. When the batch is refused for the event
/// at index i (`Error::InBatch`), appends the events before it (which may in turn be
/// refused for an earlier one), and reports the first refused event's index.
fn append_up_to_refusal(log: &Log, events: &[Event], out: &mut Receipts) -> Result<(), Stop> {
    if events.is_empty() {
        return Ok(());
    }
    match log.append_batch(events) {
        Ok(receipts) => {
            if out.sync_first {
                // Not durable yet: what the failed sync left on disk is unknown.
                log.sync().map_err(|e| Stop::Failed(Box::new(e)))?;
            }
            out.print(&receipts).map_err(Stop::Output)
        }
        Err(e) if !e.is_refusal() => Err(Stop::Failed(Box::new(e))),
        Err(auditlog::Error::InBatch { index, source }) if index < events.len() => {
            append_up_to_refusal(log, events.get(..index).unwrap_or_default(), out)?;
            Err(Stop::Refused(index, source))
        }
        // Refused for all of it (a read-only log): nothing before the first event.
        Err(e) => Err(Stop::Refused(0, Box::new(e))),
    }
}

/// Copies a log directory (files and one level of org directories).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// Flips one byte in the body of the `n`-th record of a segment image and recomputes that
/// record's CRC. Returns (byte offset changed, record offset).
fn tamper_record(bytes: &mut [u8], n: usize) -> Option<(usize, usize)> {
    let mut off = 256usize;
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes.get(off..off + 4)?.try_into().ok()?) as usize;
        off += len;
    }
    let len = u32::from_le_bytes(bytes.get(off..off + 4)?.try_into().ok()?) as usize;
    let at = off + 64 + 3; // inside the sealed body
    *bytes.get_mut(at)? ^= 0x20;
    let crc = crc32fast::hash(bytes.get(off + 8..off + len)?);
    bytes
        .get_mut(off + 4..off + 8)?
        .copy_from_slice(&crc.to_le_bytes());
    Some((at, off))
}

/// Fewest events `demo` runs with: enough for org-000's first month to hold the record
/// it tampers with (its 11th) whatever the draw.
const DEMO_MIN_EVENTS: u64 = 1000;

/// The directory `demo` runs in: `dir` if given (created if missing; refused unless
/// empty, as the demo leaves its keyring and logs there), else a scratch directory
/// removed when the returned guard is dropped.
fn demo_dir(dir: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>), Failure> {
    let Some(d) = dir else {
        let scratch =
            tempfile::tempdir().map_err(|e| Failure(format!("create a scratch directory: {e}")))?;
        return Ok((scratch.path().to_path_buf(), Some(scratch)));
    };
    match std::fs::read_dir(d) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Failure(format!(
                    "demo --dir {} (or AUDITLOG_DIR): not empty; the demo writes keyring.json, log/ and tampered/ there and leaves them: give a new or empty directory, or none for a scratch directory",
                    d.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(d)
            .map_err(|e| Failure(format!("demo: create {}: {e}", d.display())))?,
        Err(e) => return Err(Failure(format!("demo: {}: {e}", d.display()))),
    }
    Ok((d.to_path_buf(), None))
}

fn demo(dir: Option<&Path>, events: u64) -> Result<ExitCode, Failure> {
    if events < DEMO_MIN_EVENTS {
        return Err(Failure(format!(
            "demo --events {events}: at least {DEMO_MIN_EVENTS} are needed (the demo tampers with the 11th record of org-000's first month)"
        )));
    }
    let mut out = Stdout(io::stdout().lock());
    let (dir, _scratch) = demo_dir(dir)?;
    let keys = Arc::new(Keyring::open_or_create(dir.join("keyring.json"))?);
    let cfg = WorkloadConfig {
        events,
        orgs: 3,
        days: 90,
        ..WorkloadConfig::default()
    };
    for o in 0..cfg.orgs {
        keys.rotate_if_due(
            &OrgId::new(&format!("org-{o:03}"))?,
            Timestamp::now(),
            Default::default(),
        )?;
    }
    let log_dir = dir.join("log");
    writeln!(out, "auditlog demo in {}", log_dir.display())?;
    let log = Log::open(
        &log_dir,
        Options::new(keys.clone()).personal_data(["/after/email"]),
    )?;
    // Generated and appended 1000 at a time: memory does not grow with --events.
    let mut workload = Workload::new(cfg);
    let mut chunk: Vec<Event> = Vec::with_capacity(1000);
    let mut appended = 0u64;
    let t = Instant::now();
    loop {
        chunk.clear();
        chunk.extend(workload.by_ref().take(1000));
        if chunk.is_empty() {
            break;
        }
        log.append_batch(&chunk)?;
        appended += chunk.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    writeln!(
        out,
        "appended {appended} events durably (fsync per batch of 1000) in {secs:.2}s: {:.0} events/s",
        appended as f64 / secs
    )?;
    log.close()?;

    let log = Log::open_read_only(&log_dir, Options::new(keys.clone()))?;
    let org = OrgId::new("org-000")?;
    let t = Instant::now();
    let (mut n, mut refunds, mut failures) = (0u64, 0u64, 0u64);
    for item in log.scan(&org)? {
        match item {
            Ok(v) => {
                n += 1;
                if v.event.action == "payment.refunded" {
                    refunds += 1;
                }
            }
            Err(e) => {
                failures += 1;
                writeln!(out, "  finding: {e}")?;
            }
        }
    }
    writeln!(
        out,
        "read back {n} events of {org} with every chain link, HMAC tag and commitment checked in {:.2}s: {failures} failures; {refunds} are payment.refunded",
        t.elapsed().as_secs_f64()
    )?;
    for s in log.stats()? {
        writeln!(
            out,
            "  {} {}: {} events, {} bytes on disk",
            s.org_id, s.month, s.events, s.bytes
        )?;
    }
    // Verify the whole log, and pin it with a signed checkpoint.
    let opts = auditlog::verify::VerifyOptions::default();
    let report = auditlog::verify::verify(&log_dir, Some(&*keys), &opts)?;
    writeln!(out, "verify: {}", report.summary())?;
    let checkpoint = auditlog::verify::make_checkpoint(&log_dir, &org, &*keys)?;
    writeln!(
        out,
        "checkpoint of {org}: {} segments, signed with key {}",
        checkpoint.segments.len(),
        checkpoint.key_id
    )?;

    // Tamper with a copy the way an intruder without the key would: change one byte of a
    // record's body and fix its CRC so the file still looks well formed.
    let copy_dir = dir.join("tampered");
    copy_tree(&log_dir, &copy_dir)?;
    let seg = log
        .segments(&org)?
        .first()
        .map(|id| copy_dir.join(org.as_str()).join(format!("{id}.seg")))
        .ok_or_else(|| Failure("no segment to tamper with".into()))?;
    let mut bytes = std::fs::read(&seg)?;
    let (at, frame) = tamper_record(&mut bytes, 10)
        .ok_or_else(|| Failure("segment too short to tamper with".into()))?;
    std::fs::write(&seg, &bytes)?;
    writeln!(
        out,
        "changed byte {at} of the record at offset {frame} in a copy of {} and fixed its CRC:",
        seg.display()
    )?;
    let opts = auditlog::verify::VerifyOptions {
        checkpoints: vec![checkpoint],
        ..Default::default()
    };
    let tampered = auditlog::verify::verify(&copy_dir, Some(&*keys), &opts)?;
    for f in &tampered.findings {
        writeln!(out, "  {}", cli::visible::visible(&f.to_string()))?;
    }
    writeln!(out, "verify: {}", tampered.summary())?;
    if tampered.is_intact() || !report.is_intact() {
        return Err(Failure(
            "the demo expected the original to verify and the copy to fail".into(),
        ));
    }
    if failures > 0 {
        return Ok(ExitCode::from(1));
    }
    writeln!(out, "demo ok")?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `auditlog query`.
#[derive(clap::Args)]
struct QueryArgs {
    /// The org.
    #[arg(long)]
    org: String,
    /// Events at or after this time (RFC 3339, or a date: midnight UTC).
    #[arg(long)]
    since: Option<Timestamp>,
    /// Events before this time (exclusive).
    #[arg(long)]
    until: Option<Timestamp>,
    /// Events of this user.
    #[arg(long)]
    user: Option<String>,
    /// `domain.action`, or `domain.*` for every action under a prefix.
    #[arg(long)]
    action: Option<String>,
    /// Events on resources of this type.
    #[arg(long)]
    resource_type: Option<String>,
    /// Events on the resource with this id.
    #[arg(long)]
    resource_id: Option<String>,
    /// Events of this trace.
    #[arg(long)]
    trace_id: Option<String>,
    /// At most this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Resume after this event, in the output's order: the `occurred_at` and `seq` of the
    /// last line of a page read with --limit (as `2026-03-01T12:00:00.000000Z,42`). The
    /// next page then has no gap and no duplicate, even among events of one time.
    #[arg(long, value_name = "OCCURRED_AT,SEQ", value_parser = parse_after)]
    after: Option<(Timestamp, u64)>,
    /// Newest first.
    #[arg(long)]
    reverse: bool,
    /// Skip the chain and tag checks (faster; damage inside a file is still reported,
    /// tampering is not; an incomplete last record, what a crash leaves at a file's end,
    /// ends the read there without a finding, verified or not). Works without --keyring, but then no index can be checked and every
    /// segment is walked frame by frame.
    #[arg(long)]
    unverified: bool,
    /// Output: JSON lines (each event plus month, seq and hash) or a table (control,
    /// bidirectional and invisible characters shown escaped, as \u{202e}).
    #[arg(long, value_enum, default_value_t = QueryFormat::Jsonl)]
    format: QueryFormat,
}

/// `query --after OCCURRED_AT,SEQ`.
fn parse_after(s: &str) -> Result<(Timestamp, u64), String> {
    let (at, seq) = s.rsplit_once(',').ok_or_else(|| {
        "expected OCCURRED_AT,SEQ (the occurred_at and seq of an event: 2026-03-01T12:00:00.000000Z,42)"
            .to_string()
    })?;
    let at = Timestamp::parse(at).map_err(|e| e.to_string())?;
    let seq = seq
        .parse::<u64>()
        .map_err(|e| format!("seq {seq:?}: {e}"))?;
    Ok((at, seq))
}

#[derive(Clone, Copy, ValueEnum)]
enum QueryFormat {
    Jsonl,
    Table,
}

/// `verify --json`: the report, with the totals its summary line gives (findings not
/// listed included, see `Finding::omitted`) and the verdict.
#[derive(serde::Serialize)]
struct VerifyJson<'a> {
    #[serde(flatten)]
    report: &'a auditlog::verify::Report,
    intact: bool,
    errors: u64,
    warnings: u64,
}

impl<'a> VerifyJson<'a> {
    fn of(report: &'a auditlog::verify::Report) -> VerifyJson<'a> {
        VerifyJson {
            report,
            intact: report.is_intact(),
            errors: report.errors(),
            warnings: report.warnings(),
        }
    }
}

/// One line of `query --format jsonl`.
#[derive(serde::Serialize)]
struct QueryLine<'a> {
    #[serde(flatten)]
    event: &'a Event,
    month: auditlog::Month,
    seq: u64,
    hash: auditlog::Hash,
}

fn query_cmd(cli: &Cli, a: &QueryArgs) -> Result<ExitCode, Failure> {
    let dir = existing_dir(&cli.dir)?;
    let keys = match (&cli.keyring, a.unverified) {
        (Some(k), _) => Keyring::open(k)?,
        (None, true) => Keyring::in_memory(),
        (None, false) => {
            return Err(Failure(
                "keyring is required to verify (--keyring or AUDITLOG_KEYRING), or pass --unverified"
                    .into(),
            ));
        }
    };
    let org = OrgId::new(&a.org)?;
    // One query per process: caching checked index groups for later queries would only
    // hold memory (the summaries the query needs are kept while it runs either way).
    let keys = Arc::new(keys);
    let log = Log::open_read_only(dir, Options::new(keys.clone()).query_index_cache(0))?;
    let orgs = log.orgs()?;
    // An org directory replaced by a symbolic link is not followed (as verify and stats do
    // not): a finding, not an unknown org.
    let org_dir = dir.join(org.as_str());
    if std::fs::symlink_metadata(&org_dir).is_ok_and(|m| m.file_type().is_symlink()) {
        warn(format_args!(
            "auditlog: finding: {}: the directory of org {org} is a symbolic link: not followed, nothing read (run verify)",
            org_dir.display()
        ));
        return Ok(ExitCode::from(1));
    }
    if !orgs.contains(&org) {
        let known: Vec<String> = orgs.iter().map(ToString::to_string).collect();
        return Err(Failure(format!(
            "unknown org {org}: {} has no directory for it (orgs: {})",
            dir.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    }
    // The directory above a log, with the log's own directory taken for an org: not a log
    // (verify's `not_a_log`), not an org without records.
    if auditlog::verify::not_a_log(dir, Some(&org))? {
        warn(format_args!(
            "auditlog: {}: {}",
            dir.display(),
            auditlog::verify::NOT_A_LOG
        ));
        return Ok(ExitCode::from(1));
    }
    // Without any key of the org, every record would fail its tag check: one error, not a
    // finding per record.
    if !a.unverified && !keys.orgs().contains(&org) {
        return Err(Failure(format!(
            "no key for org {org} in the keyring {}: its records cannot be verified (pass --unverified to read them without checks)",
            cli.keyring
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )));
    }
    let mut q = log.query(&org);
    if let Some(t) = a.since {
        q = q.since(t);
    }
    if let Some(t) = a.until {
        q = q.until(t);
    }
    if let Some(u) = &a.user {
        q = q.user(u);
    }
    if let Some(x) = &a.action {
        q = q.action(x);
    }
    if let Some(x) = &a.resource_type {
        q = q.resource_type(x);
    }
    if let Some(x) = &a.resource_id {
        q = q.resource_id(x);
    }
    if let Some(x) = &a.trace_id {
        q = q.trace(x);
    }
    if let Some(n) = a.limit {
        q = q.limit(n);
    }
    if let Some((at, seq)) = a.after {
        q = q.after(at, seq);
    }
    if a.reverse {
        q = q.reverse();
    }
    if a.unverified {
        q = q.unverified();
    }
    let mut matches = q.run()?;
    let mut out = stdout();
    let mut findings = 0u64;
    let mut unreadable = 0u64;
    let written = (|| -> io::Result<()> {
        if let QueryFormat::Table = a.format {
            writeln!(
                out,
                "{:<27} {:<7} {:>8}  {:<14} {:<32} {:<10} resource_id",
                "occurred_at", "month", "seq", "user", "action", "type"
            )?;
        }
        for item in matches.by_ref() {
            match item {
                Ok(v) => match a.format {
                    QueryFormat::Jsonl => {
                        let line = QueryLine {
                            event: &v.event,
                            month: v.month,
                            seq: v.seq,
                            hash: v.hash,
                        };
                        serde_json::to_writer(&mut out, &line)?;
                        out.write_all(b"\n")?;
                    }
                    QueryFormat::Table => {
                        // Bidirectional controls and invisible characters escaped: a
                        // field cannot redraw the columns after it.
                        use cli::visible::visible;
                        let e = &v.event;
                        writeln!(
                            out,
                            "{:<27} {:<7} {:>8}  {:<14} {:<32} {:<10} {}",
                            e.occurred_at.to_string(),
                            v.month.to_string(),
                            v.seq,
                            visible(e.user_id.as_deref().unwrap_or("-")),
                            visible(&e.action),
                            visible(&e.resource_type),
                            visible(&e.resource_id)
                        )?;
                    }
                },
                // A segment of a newer format: not a finding, a file this build cannot read.
                Err(e @ auditlog::Error::UnsupportedFormat { .. }) => {
                    unreadable += 1;
                    out.flush()?;
                    warn(format_args!("auditlog: {e}"));
                }
                Err(e) => {
                    findings += 1;
                    out.flush()?;
                    warn(format_args!("auditlog: finding: {e}"));
                }
            }
        }
        out.flush()
    })();
    match written {
        Ok(()) => {}
        // `| head`: the reader left; not a failure of the query, whose exit code is that
        // of what was read up to then (2 for a segment of a newer format, as without it).
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            return Ok(if unreadable > 0 {
                ExitCode::from(2)
            } else if findings > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Err(e) => return Err(e.into()),
    }
    if findings > 0 {
        let (withheld, unchecked) = (matches.stats().withheld, matches.stats().unchecked);
        let mut held = String::new();
        if withheld > 0 {
            held.push_str(&format!(
                "; {withheld} matching record(s) after a failed check were withheld (they cannot be placed in the verified chain)"
            ));
        }
        if unchecked > 0 {
            held.push_str(&format!(
                "; {unchecked} record(s) read that name a key the keyring lacks were not returned (their tags could not be checked)"
            ));
        }
        warn(format_args!(
            "auditlog: {findings} verification finding(s){held}"
        ));
    }
    if unreadable > 0 {
        warn(format_args!(
            "auditlog: {unreadable} segment(s) of a newer format were not read (use a newer auditlog)"
        ));
        return Ok(ExitCode::from(2));
    }
    if findings > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
