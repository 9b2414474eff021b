//! CQL row-cost micro-benchmark: the server's CPU per row for each request
//! shape the ScyllaDB store could use (plain insert, `IF NOT EXISTS`,
//! single- and multi-partition unlogged batches, point and `IN` reads).
//!
//! The figure that matters on a shared machine is the database process's
//! own CPU (utime + stime from `/proc/<pid>/stat`) divided by the rows a
//! shape wrote or read: noise from other processes barely moves it. Each
//! shape runs `--rows` rows with `--in-flight` requests outstanding, then
//! waits `--settle` so that the memtable flushes and compactions the shape
//! caused are counted in its window; `--runs` repeats every shape and the
//! median is printed.
//!
//! ```sh
//! loadtest/scenarios/cql-rowcost.sh          # starts Cassandra, runs this
//! cargo run --release --example cql_rowcost -- --pid <cassandra pid>
//! ```

use alpes_tracking::store::scylladb::{session, ScyllaConfig};
use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use std::time::{Duration, Instant};

struct Args {
    nodes: String,
    pid: u32,
    rows: usize,
    in_flight: usize,
    runs: usize,
    settle: Duration,
    row_bytes: usize,
    only: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        nodes: std::env::var("SCYLLA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into()),
        pid: 0,
        rows: 20_000,
        in_flight: 64,
        runs: 3,
        settle: Duration::from_secs(2),
        row_bytes: 300,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--nodes" => a.nodes = value()?,
            "--pid" => a.pid = value()?.parse()?,
            "--rows" => a.rows = value()?.parse()?,
            "--in-flight" => a.in_flight = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--settle-ms" => a.settle = Duration::from_millis(value()?.parse()?),
            "--row-bytes" => a.row_bytes = value()?.parse()?,
            "--only" => a.only = Some(value()?),
            other => anyhow::bail!("unknown flag {other} (see the file's header)"),
        }
    }
    anyhow::ensure!(a.pid > 0, "--pid <database process id> is required");
    Ok(a)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th fields of the whole line.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

fn self_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds(std::process::id())
}

/// The shapes, each a name and the rows one request carries.
const SHAPES: &[(&str, usize)] = &[
    ("insert", 1),
    ("insert-if-not-exists", 1),
    ("batch-1-partition-16", 16),
    ("batch-1-partition-32", 32),
    ("batch-1-partition-128", 128),
    ("batch-32-partitions", 32),
    ("batch-128-partitions", 128),
    ("batch-128-partitions-small", 128),
    ("batch-32-partitions-4-rows", 128),
    ("read-1-row", 1),
    ("read-in-64-partitions", 64),
    ("read-in-64-missing", 64),
    ("read-1-partition-in-8-rows", 8),
];

struct Bench {
    session: Session,
    kv_insert: PreparedStatement,
    kv_lwt: PreparedStatement,
    wide_insert: PreparedStatement,
    kv_read: PreparedStatement,
    kv_read_in: PreparedStatement,
    wide_read_in: PreparedStatement,
    blob: Vec<u8>,
}

impl Bench {
    async fn setup(nodes: &str, row_bytes: usize) -> anyhow::Result<Self> {
        let mut cfg = ScyllaConfig::new(nodes, "rowcost");
        cfg.consistency = Consistency::One;
        let session = session(&cfg).await?;
        for ddl in [
            "DROP KEYSPACE IF EXISTS rowcost",
            "CREATE KEYSPACE rowcost WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            "CREATE TABLE rowcost.kv (k text PRIMARY KEY, v blob)",
            "CREATE TABLE rowcost.wide (p text, c bigint, v blob, PRIMARY KEY ((p), c))",
        ] {
            session.query_unpaged(ddl, ()).await?;
        }
        let prep = |q: &'static str| session.prepare(q);
        let mut kv_insert = prep("INSERT INTO rowcost.kv (k, v) VALUES (?, ?)").await?;
        kv_insert.set_is_idempotent(true);
        let kv_lwt = prep("INSERT INTO rowcost.kv (k, v) VALUES (?, ?) IF NOT EXISTS").await?;
        let wide_insert = prep("INSERT INTO rowcost.wide (p, c, v) VALUES (?, ?, ?)").await?;
        let kv_read = prep("SELECT v FROM rowcost.kv WHERE k = ?").await?;
        let kv_read_in = prep("SELECT k, v FROM rowcost.kv WHERE k IN ?").await?;
        let wide_read_in = prep("SELECT c, v FROM rowcost.wide WHERE p = ? AND c IN ?").await?;
        Ok(Bench {
            session,
            kv_insert,
            kv_lwt,
            wide_insert,
            kv_read,
            kv_read_in,
            wide_read_in,
            blob: vec![7u8; row_bytes],
        })
    }

    /// Request `i` of a shape (each request carries `per` rows).
    async fn request(&self, shape: &str, run: usize, i: usize, per: usize) -> anyhow::Result<()> {
        let key = |n: usize| format!("r{run}-{shape}-{n}");
        let blob = self.blob.as_slice();
        match shape {
            "insert" => {
                self.session
                    .execute_unpaged(&self.kv_insert, (key(i), blob))
                    .await?;
            }
            "insert-if-not-exists" => {
                self.session
                    .execute_unpaged(&self.kv_lwt, (key(i), blob))
                    .await?;
            }
            s if s.starts_with("batch-1-partition") => {
                let mut b = Batch::new(BatchType::Unlogged);
                let p = key(i);
                let mut values = Vec::with_capacity(per);
                for c in 0..per {
                    b.append_statement(self.wide_insert.clone());
                    values.push((p.clone(), c as i64, blob));
                }
                self.session.batch(&b, values).await?;
            }
            "batch-128-partitions-small" => {
                let mut b = Batch::new(BatchType::Unlogged);
                let mut values = Vec::with_capacity(per);
                for c in 0..per {
                    b.append_statement(self.kv_insert.clone());
                    values.push((key(i * per + c), &blob[..60.min(blob.len())]));
                }
                self.session.batch(&b, values).await?;
            }
            // Four rows in each of 32 partitions, the sizes of one user's
            // commit: a 60-byte head, the event, a 40-byte id row and a
            // 40-byte key row.
            "batch-32-partitions-4-rows" => {
                let mut b = Batch::new(BatchType::Unlogged);
                let mut values = Vec::with_capacity(per);
                for c in 0..per / 4 {
                    let p = key(i * per + c);
                    for (k, len) in [(0i64, 60usize), (1, blob.len()), (2, 40), (3, 40)] {
                        b.append_statement(self.wide_insert.clone());
                        values.push((p.clone(), k, &blob[..len.min(blob.len())]));
                    }
                }
                self.session.batch(&b, values).await?;
            }
            s if s.starts_with("batch-") => {
                let mut b = Batch::new(BatchType::Unlogged);
                let mut values = Vec::with_capacity(per);
                for c in 0..per {
                    b.append_statement(self.kv_insert.clone());
                    values.push((key(i * per + c), blob));
                }
                self.session.batch(&b, values).await?;
            }
            // Reads go to the rows the "insert" and batch shapes wrote.
            "read-1-row" => {
                self.session
                    .execute_unpaged(&self.kv_read, (format!("r{run}-insert-{i}"),))
                    .await?;
            }
            "read-in-64-partitions" | "read-in-64-missing" => {
                let prefix = if shape == "read-in-64-missing" {
                    "missing"
                } else {
                    "batch-32-partitions"
                };
                let keys: Vec<String> = (0..per)
                    .map(|c| format!("r{run}-{prefix}-{}", (i * per + c) % 20_000))
                    .collect();
                self.session
                    .execute_unpaged(&self.kv_read_in, (keys,))
                    .await?;
            }
            "read-1-partition-in-8-rows" => {
                let p = format!("r{run}-batch-1-partition-16-{}", i % 1000);
                let cs: Vec<i64> = (0..per as i64).collect();
                self.session
                    .execute_unpaged(&self.wide_read_in, (p, cs))
                    .await?;
            }
            other => anyhow::bail!("unknown shape {other}"),
        }
        Ok(())
    }
}

struct Figure {
    server_us_per_row: f64,
    client_us_per_row: f64,
    rows_per_s: f64,
}

async fn run_shape(
    b: &Bench,
    a: &Args,
    run: usize,
    shape: &str,
    per: usize,
) -> anyhow::Result<Figure> {
    let requests = a.rows.div_ceil(per);
    let rows = requests * per;
    let (server0, client0, t0) = (cpu_seconds(a.pid)?, self_cpu_seconds()?, Instant::now());
    futures::stream::iter(0..requests)
        .map(|i| b.request(shape, run, i, per))
        .buffer_unordered(a.in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    let wall = t0.elapsed().as_secs_f64();
    let client = self_cpu_seconds()? - client0;
    tokio::time::sleep(a.settle).await;
    let server = cpu_seconds(a.pid)? - server0;
    Ok(Figure {
        server_us_per_row: server * 1e6 / rows as f64,
        client_us_per_row: client * 1e6 / rows as f64,
        rows_per_s: rows as f64 / wall,
    })
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let b = Bench::setup(&a.nodes, a.row_bytes).await?;
    // Idle baseline: what the server burns doing nothing (gossip, GC).
    let idle0 = cpu_seconds(a.pid)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = (cpu_seconds(a.pid)? - idle0) / 3.0;
    println!(
        "server idle: {:.1} ms CPU/s (included in the figures below); rows per shape per run: {}, in flight: {}, row: {} B",
        idle * 1e3,
        a.rows,
        a.in_flight,
        a.row_bytes
    );
    println!(
        "{:<28} {:>16} {:>10} {:>16} {:>12}",
        "shape", "server µs/row", "spread", "client µs/row", "rows/s"
    );
    // One pass first, not counted: the JVM compiles its hot paths (C2)
    // on first use, which alone costs more CPU than a short shape.
    for (shape, per) in SHAPES {
        if a.only.as_deref().is_some_and(|o| !shape.contains(o)) {
            continue;
        }
        run_shape(&b, &a, a.runs, shape, *per).await?;
    }
    println!("(warm-up pass done)");
    let mut figures: Vec<Vec<Figure>> = SHAPES.iter().map(|_| Vec::new()).collect();
    for run in 0..a.runs {
        for (k, (shape, per)) in SHAPES.iter().enumerate() {
            if a.only.as_deref().is_some_and(|o| !shape.contains(o)) {
                continue;
            }
            figures[k].push(run_shape(&b, &a, run, shape, *per).await?);
        }
    }
    for ((shape, _), f) in SHAPES.iter().zip(figures) {
        if f.is_empty() {
            continue;
        }
        let (server, lo, hi) = median(f.iter().map(|x| x.server_us_per_row).collect());
        let (client, _, _) = median(f.iter().map(|x| x.client_us_per_row).collect());
        let (rate, _, _) = median(f.iter().map(|x| x.rows_per_s).collect());
        println!(
            "{shape:<28} {server:>16.1} {:>10} {client:>16.1} {rate:>12.0}",
            format!("{lo:.0}-{hi:.0}")
        );
    }
    Ok(())
}
