//! Deterministic generator of the benchmark SQLite database.
//!
//! Same seed, same scale and same bundled SQLite version → byte-identical
//! file. Rows are inserted in key order in one transaction with journaling
//! off; secondary indexes are built after the load; the file is left in
//! rollback-journal (`DELETE`) mode so that it is a single self-contained file
//! (no `-wal` beside it) that `cp`, `.backup` and `VACUUM INTO` all see whole.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, params};

use crate::rng::{Rng, mix};

/// Bump when the generated content changes, so cached datasets are rebuilt.
pub const GENERATOR_VERSION: u32 = 1;

/// Page size of the generated database.
pub const PAGE_SIZE: u32 = 4096;

/// Row counts at scale 1.0 (3,000,000 rows in all).
const BASE_USERS: f64 = 250_000.0;
const BASE_ORDERS: f64 = 1_700_000.0;
const BASE_EVENTS: f64 = 700_000.0;
const BASE_SESSIONS: f64 = 350_000.0;

/// 2015-01-01T00:00:00Z.
const EPOCH_2015: i64 = 1_420_070_400;
/// 2023-01-01T00:00:00Z.
const EPOCH_2023: i64 = 1_672_531_200;

pub const SCHEMA: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    score REAL NOT NULL,
    bio TEXT
);
CREATE TABLE orders (
    user_id INTEGER NOT NULL REFERENCES users(id),
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL,
    discount REAL NOT NULL,
    total REAL NOT NULL,
    status INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(id),
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE sessions (
    token TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    expires INTEGER NOT NULL
) WITHOUT ROWID;
";

pub const INDEXES: &str = "
CREATE UNIQUE INDEX idx_users_email ON users(email);
CREATE INDEX idx_orders_user ON orders(user_id);
CREATE INDEX idx_events_kind_ts ON events(kind, ts);
CREATE INDEX idx_sessions_user ON sessions(user_id);
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub users: u64,
    pub orders: u64,
    pub events: u64,
    pub sessions: u64,
}

impl Counts {
    pub fn for_scale(scale: f64) -> Counts {
        let n = |base: f64| ((base * scale).round() as u64).max(1);
        Counts {
            users: n(BASE_USERS),
            orders: n(BASE_ORDERS),
            events: n(BASE_EVENTS),
            sessions: n(BASE_SESSIONS),
        }
    }

    pub fn total(&self) -> u64 {
        self.users + self.orders + self.events + self.sessions
    }

    /// The dataset's tables and their row counts (a table with no rows is
    /// not in the dataset: see [`Counts::big_table`]).
    pub fn by_table(&self) -> Vec<(&'static str, u64)> {
        [
            ("users", self.users),
            ("orders", self.orders),
            ("events", self.events),
            ("sessions", self.sessions),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .collect()
    }

    /// The counts of a big-table dataset: `orders` alone.
    pub fn big_table(rows: u64) -> Counts {
        Counts {
            users: 0,
            orders: rows,
            events: 0,
            sessions: 0,
        }
    }
}

#[derive(Debug)]
pub struct Generated {
    pub bytes: u64,
    pub counts: Counts,
    pub elapsed: Duration,
}

/// Generates the database at `path`, which must not exist. The file is built
/// under a temporary name and renamed into place, so a file at `path` is
/// always complete.
pub fn generate(path: &Path, scale: f64, seed: u64) -> Result<Generated> {
    if !(scale.is_finite() && scale > 0.0) {
        bail!("scale must be a positive number, got {scale}");
    }
    let counts = Counts::for_scale(scale);
    build(path, counts, |tx| {
        tx.execute_batch(SCHEMA)?;
        let names = NamePools::new(seed);
        fill_users(tx, seed, counts.users, &names)?;
        fill_orders(tx, seed, &counts)?;
        fill_events(tx, seed, &counts)?;
        fill_sessions(tx, seed, &counts)?;
        tx.execute_batch(INDEXES)?;
        Ok(())
    })
}

/// The one table of a big-table database: `orders` as in [`SCHEMA`], without
/// the reference to a `users` table it does not have, and its index.
pub const BIG_TABLE_SCHEMA: &str = "
CREATE TABLE orders (
    user_id INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL,
    discount REAL NOT NULL,
    total REAL NOT NULL,
    status INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
";

pub const BIG_TABLE_INDEXES: &str = "CREATE INDEX idx_orders_user ON orders(user_id);";

/// Generates a database at `path` holding one table, `orders`, of `rows`
/// rows made as the `orders` of a full dataset are (user ids drawn from the
/// scale-1 number of users), for the memory targets on one big table.
/// Cheaper to build than a full dataset with as many orders.
pub fn generate_big_table(path: &Path, rows: u64, seed: u64) -> Result<Generated> {
    if rows == 0 {
        bail!("a big table needs at least one row");
    }
    let counts = Counts::big_table(rows);
    build(path, counts, |tx| {
        tx.execute_batch(BIG_TABLE_SCHEMA)?;
        let users = Counts::for_scale(1.0).users;
        fill_orders(tx, seed, &Counts { users, ..counts })?;
        tx.execute_batch(BIG_TABLE_INDEXES)?;
        Ok(())
    })
}

/// Builds a database at `path` (which must not exist) with `fill`, in one
/// transaction with journaling off, under a temporary name renamed into
/// place, and leaves it in rollback-journal mode.
fn build(
    path: &Path,
    counts: Counts,
    fill: impl FnOnce(&rusqlite::Transaction) -> Result<()>,
) -> Result<Generated> {
    if path.exists() {
        bail!("{} already exists", path.display());
    }
    let start = Instant::now();
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    for stale in [
        partial.clone(),
        PathBuf::from(format!("{}-journal", partial.display())),
    ] {
        if stale.exists() {
            fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    {
        let mut conn = Connection::open(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        conn.execute_batch(&format!(
            "PRAGMA page_size={PAGE_SIZE};
             PRAGMA journal_mode=OFF;
             PRAGMA synchronous=OFF;
             PRAGMA locking_mode=EXCLUSIVE;
             PRAGMA temp_store=MEMORY;
             PRAGMA cache_size=-262144;"
        ))?;
        let tx = conn.transaction()?;
        fill(&tx)?;
        tx.commit()?;
        conn.execute_batch("PRAGMA journal_mode=DELETE;")?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            bail!(
                "could not switch {} to journal_mode=DELETE",
                partial.display()
            );
        }
        conn.close().map_err(|(_, e)| e)?;
    }
    fs::rename(&partial, path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    let bytes = fs::metadata(path)?.len();
    Ok(Generated {
        bytes,
        counts,
        elapsed: start.elapsed(),
    })
}

// ---------------------------------------------------------------- vocabulary

const SYLLABLES: &[&str] = &[
    "ka", "ri", "to", "mel", "an", "sa", "vo", "len", "dri", "ta", "mo", "ne", "li", "ber", "gan",
    "si", "ro", "fa", "lu", "den", "mar", "ti", "co", "sha", "nel", "por", "vi", "est", "ol", "ya",
    "ra", "bel", "jo", "han", "el", "is", "ste", "wen", "ca", "dor", "mi", "ka", "the", "on", "ur",
];

const DOMAINS: &[&str] = &[
    "mailbox.test",
    "example.com",
    "post.example.org",
    "inbox.test",
    "corp.example.net",
    "fastmail.test",
    "uni.example.edu",
    "web.test",
    "home.example",
    "letters.test",
    "company.example.com",
    "pigeon.test",
];

const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are",
    "with", "as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by",
    "word", "but", "what", "some", "we", "can", "out", "other", "were", "all", "there", "when",
    "up", "use", "your", "how", "said", "an", "each", "she", "which", "do", "their", "time", "if",
    "will", "way", "about", "many", "then", "them", "write", "would", "like", "so", "these", "her",
    "long", "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could", "go",
    "come", "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water",
    "than", "call", "first", "who", "may", "down", "side", "been", "now", "find", "any", "new",
    "work", "part", "take", "get", "place", "made", "live", "where", "after", "back", "little",
    "only", "round", "man", "year", "came", "show", "every", "good", "me", "give", "our", "under",
    "name", "very", "through", "just", "form", "sentence", "great", "think", "say", "help", "low",
    "line", "differ", "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old",
    "too", "same", "tell", "does", "set", "three", "want", "air", "well", "also", "play", "small",
    "end", "put", "home", "read", "hand", "port", "large", "spell", "add", "even", "land", "here",
    "must", "big", "high", "such", "follow", "act", "why", "ask", "men", "change", "went", "light",
    "kind", "off", "need", "house", "picture", "try", "us", "again", "animal", "point", "mother",
    "world", "near", "build", "self", "earth", "father", "head", "stand", "own", "page", "should",
    "country", "found", "answer", "school", "grow", "study", "still", "learn", "plant", "cover",
    "food", "sun", "four", "between", "state", "keep", "eye", "never", "last", "let", "thought",
    "city", "tree", "cross", "farm", "hard", "start", "might", "story", "saw", "far", "sea",
    "draw", "left", "late", "run", "while", "press", "close", "night", "real", "life", "few",
    "north", "open", "seem", "together", "next", "white", "children", "begin", "got", "walk",
    "example", "ease", "paper", "group", "always", "music", "those", "both", "mark", "often",
    "letter", "until", "mile", "river", "car", "feet", "care", "second", "book", "carry", "took",
    "science", "eat", "room", "friend", "began", "idea", "fish", "mountain", "stop", "once",
    "base", "hear", "horse", "cut", "sure", "watch", "color", "face", "wood", "main", "enough",
    "plain", "girl", "usual", "young", "ready", "above", "ever", "red", "list", "though", "feel",
    "talk", "bird", "soon", "body", "dog", "family", "direct", "pose", "leave", "song", "measure",
    "door", "product", "black", "short", "numeral", "class", "wind", "question", "happen",
    "complete", "ship", "area", "half", "rock", "order", "fire", "south", "problem", "piece",
    "told", "knew", "pass", "since", "top", "whole", "king", "space", "heard", "best", "hour",
    "better", "true", "during", "hundred", "five", "remember", "step", "early", "hold", "west",
    "ground", "interest", "reach", "fast", "verb", "sing", "listen", "six", "table", "travel",
    "less", "morning", "ten", "simple", "several", "vowel", "toward", "war", "lay", "against",
    "pattern", "slow", "center", "love", "person", "money", "serve", "appear", "road", "map",
];

const EVENT_KINDS: &[&str] = &[
    "page_view",
    "click",
    "search",
    "api_call",
    "add_to_cart",
    "login",
    "logout",
    "purchase",
    "share",
    "error",
    "signup",
    "upload",
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
    "curl/8.8.0",
    "okhttp/4.12.0",
];

/// First and last names built from syllables, so that names repeat the way
/// real ones do (a few common, a long tail of rare ones).
struct NamePools {
    first: Vec<String>,
    last: Vec<String>,
}

impl NamePools {
    fn new(seed: u64) -> NamePools {
        let mut rng = Rng::stream(seed, 100);
        let mut make = |count: usize, min: u64, max: u64| -> Vec<String> {
            (0..count)
                .map(|_| {
                    let mut s = String::new();
                    for _ in 0..rng.range(min, max) {
                        s.push_str(rng.pick::<&str>(SYLLABLES));
                    }
                    capitalize(&s)
                })
                .collect()
        };
        let first = make(600, 2, 3);
        let last = make(4000, 2, 4);
        NamePools { first, last }
    }
}

fn capitalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    if let Some(c) = chars.next() {
        out.extend(c.to_uppercase());
    }
    out.push_str(chars.as_str());
    out
}

/// Appends `n` words, skewed toward common ones, as sentences.
fn push_words(rng: &mut Rng, out: &mut String, n: u64) {
    let mut start_sentence = true;
    for i in 0..n {
        let word = WORDS[rng.skewed(WORDS.len() as u64) as usize];
        if i > 0 {
            out.push(' ');
        }
        if start_sentence {
            out.push_str(&capitalize(word));
            start_sentence = false;
        } else {
            out.push_str(word);
        }
        if i + 1 == n || rng.chance(0.08) {
            out.push('.');
            start_sentence = true;
        } else if rng.chance(0.04) {
            out.push(',');
        }
    }
}

fn push_hex(out: &mut String, v: u64) {
    let _ = write!(out, "{v:016x}");
}

/// A user id referenced from another table: skewed toward low ids (early,
/// active users), always in `1..=users`.
fn some_user(rng: &mut Rng, users: u64) -> i64 {
    rng.mild(users) as i64 + 1
}

// -------------------------------------------------------------------- tables

fn fill_users(conn: &Connection, seed: u64, users: u64, names: &NamePools) -> Result<()> {
    let mut rng = Rng::stream(seed, 1);
    let mut stmt = conn.prepare(
        "INSERT INTO users (id, name, email, created_at, score, bio) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let span = 9 * 365 * 86_400i64;
    let mut name = String::new();
    let mut email = String::new();
    let mut bio = String::new();
    for id in 1..=users as i64 {
        let first = &names.first[rng.mild(names.first.len() as u64) as usize];
        let last = &names.last[rng.mild(names.last.len() as u64) as usize];
        name.clear();
        name.push_str(first);
        name.push(' ');
        name.push_str(last);

        // Every variant carries the id, which keeps the unique index happy.
        email.clear();
        let (f, l) = (first.to_lowercase(), last.to_lowercase());
        match rng.below(4) {
            0 => write!(email, "{f}.{l}{id}")?,
            1 => write!(email, "{}{l}{id}", &f[..1])?,
            2 => write!(email, "{f}{id}")?,
            _ => write!(email, "{l}.{f}.{id}")?,
        }
        email.push('@');
        email.push_str(DOMAINS[rng.skewed(DOMAINS.len() as u64) as usize]);

        let created_at = EPOCH_2015 + (id - 1) * span / users as i64 + rng.below(3600) as i64;
        let score = (rng.unit() * 1000.0).round() / 100.0;
        let bio_value = if rng.chance(0.35) {
            None
        } else {
            bio.clear();
            let n = rng.range(3, 32);
            push_words(&mut rng, &mut bio, n);
            Some(bio.as_str())
        };
        stmt.execute(params![id, name, email, created_at, score, bio_value])?;
    }
    Ok(())
}

fn fill_orders(conn: &Connection, seed: u64, counts: &Counts) -> Result<()> {
    let mut rng = Rng::stream(seed, 2);
    let mut stmt = conn.prepare(
        "INSERT INTO orders (user_id, product_id, quantity, unit_price, discount, total, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let span = 8 * 365 * 86_400i64;
    for i in 0..counts.orders as i64 {
        let user_id = some_user(&mut rng, counts.users);
        let product_id = rng.skewed(50_000) as i64 + 1;
        let quantity = rng.skewed(10) as i64 + 1;
        // Prices are a function of the product, so they repeat.
        let unit_price = ((mix(product_id as u64) % 20_000) as f64 + 99.0) / 100.0;
        let discount = if rng.chance(0.8) {
            0.0
        } else {
            *rng.pick(&[0.05, 0.1, 0.15, 0.2, 0.25])
        };
        let total = (unit_price * quantity as f64 * (1.0 - discount) * 100.0).round() / 100.0;
        // 0 pending, 1 paid, 2 shipped, 3 delivered, 4 cancelled.
        let status = match rng.below(100) {
            0..=2 => 0,
            3..=6 => 1,
            7..=11 => 2,
            12..=93 => 3,
            _ => 4,
        };
        let created_at =
            EPOCH_2015 + 86_400 * 30 + i * span / counts.orders as i64 + rng.below(600) as i64;
        stmt.execute(params![
            user_id, product_id, quantity, unit_price, discount, total, status, created_at
        ])?;
    }
    Ok(())
}

fn fill_events(conn: &Connection, seed: u64, counts: &Counts) -> Result<()> {
    let mut rng = Rng::stream(seed, 3);
    let mut stmt = conn.prepare(
        "INSERT INTO events (id, user_id, kind, ts, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let span = 2 * 365 * 86_400i64;
    let mut text = String::new();
    let mut payload: Vec<u8> = Vec::new();
    for id in 1..=counts.events as i64 {
        let kind_ix = rng.skewed(EVENT_KINDS.len() as u64) as usize;
        let kind = EVENT_KINDS[kind_ix];
        let user_id = if rng.chance(0.1) {
            None
        } else {
            Some(some_user(&mut rng, counts.users))
        };
        let ts = EPOCH_2023 + (id - 1) * span / counts.events as i64 + rng.below(30) as i64;
        text.clear();
        // A session id shared by a user's events of one day.
        let session = mix(user_id.unwrap_or(0) as u64 ^ ((ts / 86_400) as u64) << 40);
        write!(text, "{{\"s\":\"{:012x}\"", session >> 16)?;
        let mut binary_tail = 0usize;
        match kind {
            "page_view" | "click" => {
                text.push_str(",\"path\":\"/");
                for seg in 0..rng.range(1, 2) {
                    if seg > 0 {
                        text.push('/');
                    }
                    text.push_str(WORDS[rng.skewed(WORDS.len() as u64) as usize]);
                }
                if rng.chance(0.5) {
                    write!(text, "/{}", rng.skewed(10_000))?;
                }
                write!(text, "\",\"ms\":{}", rng.skewed(5000))?;
                if rng.chance(0.2) {
                    write!(
                        text,
                        ",\"ref\":\"{}\"",
                        DOMAINS[rng.skewed(DOMAINS.len() as u64) as usize]
                    )?;
                }
            }
            "search" => {
                text.push_str(",\"q\":\"");
                for w in 0..rng.range(1, 5) {
                    if w > 0 {
                        text.push(' ');
                    }
                    text.push_str(WORDS[rng.skewed(WORDS.len() as u64) as usize]);
                }
                write!(text, "\",\"results\":{}", rng.skewed(500))?;
            }
            "api_call" => {
                write!(
                    text,
                    ",\"endpoint\":\"/api/v{}/{}\",\"status\":{},\"latency_ms\":{},\"request_id\":\"",
                    rng.range(1, 3),
                    WORDS[rng.skewed(WORDS.len() as u64) as usize],
                    *rng.pick(&[200, 200, 200, 200, 201, 204, 304, 400, 404, 500]),
                    rng.skewed(2000)
                )?;
                push_hex(&mut text, rng.next_u64());
                push_hex(&mut text, rng.next_u64());
                text.push('"');
            }
            "error" => {
                write!(
                    text,
                    ",\"code\":{},\"message\":\"",
                    *rng.pick(&[400, 401, 403, 404, 409, 500, 502, 503])
                )?;
                let n = rng.range(5, 25);
                push_words(&mut rng, &mut text, n);
                text.push_str("\",\"trace\":[");
                for f in 0..rng.range(3, 12) {
                    if f > 0 {
                        text.push(',');
                    }
                    write!(
                        text,
                        "\"coffer::{}::{}:{}\"",
                        WORDS[rng.skewed(WORDS.len() as u64) as usize],
                        WORDS[rng.skewed(WORDS.len() as u64) as usize],
                        rng.below(900) + 10
                    )?;
                }
                text.push(']');
            }
            "upload" => {
                // Mostly incompressible: the bytes of a small image or file.
                write!(
                    text,
                    ",\"name\":\"{}.{}\",\"mime\":\"{}\"",
                    WORDS[rng.skewed(WORDS.len() as u64) as usize],
                    rng.pick(&["jpg", "png", "pdf", "zip"]),
                    rng.pick(&[
                        "image/jpeg",
                        "image/png",
                        "application/pdf",
                        "application/zip"
                    ])
                )?;
                binary_tail = rng.range(64, 768) as usize;
            }
            "purchase" | "add_to_cart" => {
                write!(
                    text,
                    ",\"product\":{},\"qty\":{},\"cart\":[",
                    rng.skewed(50_000) + 1,
                    rng.skewed(10) + 1
                )?;
                for p in 0..rng.range(1, 6) {
                    if p > 0 {
                        text.push(',');
                    }
                    write!(text, "{}", rng.skewed(50_000) + 1)?;
                }
                text.push(']');
            }
            _ => {
                write!(
                    text,
                    ",\"ip\":\"10.{}.{}.{}\",\"ua\":\"{}\"",
                    rng.below(256),
                    rng.below(256),
                    rng.below(256),
                    USER_AGENTS[rng.skewed(USER_AGENTS.len() as u64) as usize]
                )?;
            }
        }
        text.push('}');
        payload.clear();
        payload.extend_from_slice(text.as_bytes());
        // A small binary trailer on some events (a checksum or signature).
        if binary_tail == 0 && rng.chance(0.2) {
            binary_tail = 16;
        }
        if binary_tail > 0 {
            payload.push(0);
            rng.fill(&mut payload, binary_tail);
        }
        stmt.execute(params![id, user_id, kind, ts, payload])?;
    }
    Ok(())
}

fn fill_sessions(conn: &Connection, seed: u64, counts: &Counts) -> Result<()> {
    let mut rng = Rng::stream(seed, 4);
    let mut stmt =
        conn.prepare("INSERT INTO sessions (token, user_id, expires) VALUES (?1, ?2, ?3)")?;
    let salt = mix(seed ^ 0x5E55_1045);
    let mut token = String::with_capacity(32);
    for i in 0..counts.sessions {
        // The first half is a bijection of the row number: unique by
        // construction. The second half is random. Keys arrive in random
        // order, as they would in a real WITHOUT ROWID table.
        token.clear();
        push_hex(&mut token, mix(i ^ salt));
        push_hex(&mut token, rng.next_u64());
        let user_id = some_user(&mut rng, counts.users);
        let expires = EPOCH_2023 + 2 * 365 * 86_400 + rng.below(90 * 86_400) as i64;
        stmt.execute(params![token, user_id, expires])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut out = Vec::new();
        for (table, order) in [
            ("users", "id"),
            ("orders", "rowid"),
            ("events", "id"),
            ("sessions", "token"),
        ] {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT quote(rowid), * FROM {table} ORDER BY {order}"
                ))
                .or_else(|_| conn.prepare(&format!("SELECT * FROM {table} ORDER BY {order}")))
                .unwrap();
            let cols = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let mut line = String::from(table);
                for c in 0..cols {
                    let v: rusqlite::types::Value = row.get(c).unwrap();
                    line.push_str(&format!("|{v:?}"));
                }
                out.push(line);
            }
        }
        out
    }

    #[test]
    fn generation_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        let b = dir.path().join("b.db");
        let c = dir.path().join("c.db");
        let ga = generate(&a, 0.001, 7).unwrap();
        generate(&b, 0.001, 7).unwrap();
        generate(&c, 0.001, 8).unwrap();
        assert_eq!(ga.counts, Counts::for_scale(0.001));
        let (da, db, dc) = (dump(&a), dump(&b), dump(&c));
        assert_eq!(da.len() as u64, ga.counts.total());
        assert_eq!(da, db, "same seed and scale must give the same rows");
        assert_ne!(da, dc, "another seed must give other rows");
        assert_eq!(
            fs::read(&a).unwrap(),
            fs::read(&b).unwrap(),
            "same seed and scale must give the same bytes"
        );
        let conn = Connection::open(&a).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        let page: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(page, PAGE_SIZE);
    }

    #[test]
    fn big_table_has_orders_alone() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("big.db");
        let g = generate_big_table(&a, 1234, 7).unwrap();
        assert_eq!(g.counts.by_table(), vec![("orders", 1234)]);
        let conn = Connection::open(&a).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(tables, ["orders"]);
        let n: u64 = conn
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1234);
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        fs::write(&a, b"x").unwrap();
        assert!(generate(&a, 0.001, 1).is_err());
    }
}
