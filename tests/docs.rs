//! The docs against the code. README.md, docs/*.md and any deploy/**/README* may name only
//! settings, metrics, HTTP routes, Redis keys, make targets, files and alerts that exist, with
//! the defaults and bounds the code has, and link only to files and headings that exist.
//!
//! The truth comes from the code, never from a list kept here: the settings from clap's command
//! (src/config) and its validation, probed at each documented bound; the metrics from the
//! registry (src/metrics.rs); the routes from the OpenAPI document (which a unit test in
//! src/startup/route_tables.rs holds equal to the route tables); the Redis keys from the key scheme
//! (src/store/keys.rs); make targets from the Makefile; files from the tree; alerts from
//! grafana/alerts.yml. The metrics table of docs/reference-metrics.md is generated from the registry:
//! `DOCS_WRITE=1 cargo test --test docs` rewrites it. Needs neither Kafka nor Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use clap::{CommandFactory, Parser};
use queuegate::config::{Cli, Invocation, Role};
use regex::Regex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// One doc: its path from the repository root and its text.
struct Doc {
    path: String,
    text: String,
}

/// One line of a doc: its number (1-based), its text, and whether it is inside a fenced block.
struct Line<'a> {
    no: usize,
    text: &'a str,
    fenced: bool,
}

impl Doc {
    fn lines(&self) -> Vec<Line<'_>> {
        let mut fenced = false;
        let mut out = Vec::new();
        for (i, text) in self.text.lines().enumerate() {
            let fence = text.trim_start().starts_with("```");
            out.push(Line { no: i + 1, text, fenced: fenced || fence });
            if fence {
                fenced = !fenced;
            }
        }
        out
    }

    /// The code of each line: the whole line in a fenced block, else its `inline code` spans.
    fn code(&self) -> Vec<(usize, String)> {
        static SPAN: LazyLock<Regex> = LazyLock::new(|| Regex::new("`([^`]+)`").unwrap());
        let span = &*SPAN;
        let lines = self.lines();
        lines
            .iter()
            .map(|l| {
                let code = if l.fenced {
                    l.text.to_owned()
                } else {
                    span.captures_iter(l.text).map(|c| c[1].to_owned()).collect::<Vec<_>>().join(" ; ")
                };
                (l.no, code)
            })
            .collect()
    }

    /// The directory the doc's relative links start from.
    fn dir(&self) -> PathBuf {
        root().join(&self.path).parent().unwrap().to_path_buf()
    }
}

/// Every file under `dir` (recursively), sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// README.md, docs/*.md and deploy/**/README*.
fn docs() -> Vec<Doc> {
    let mut paths = vec![root().join("README.md")];
    paths.extend(walk(&root().join("docs")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")));
    paths.extend(
        walk(&root().join("deploy"))
            .into_iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("README")),
    );
    paths
        .into_iter()
        .map(|p| {
            let path = p.strip_prefix(root()).unwrap().to_string_lossy().into_owned();
            Doc { text: read(&path), path }
        })
        .collect()
}

/// What one check found; the test fails listing every finding.
struct Findings {
    kind: &'static str,
    list: Vec<String>,
}

impl Findings {
    fn new(kind: &'static str) -> Self {
        Findings { kind, list: Vec::new() }
    }

    fn add(&mut self, doc: &str, line: usize, what: impl Display) {
        self.list.push(format!("{doc}:{line}: {what}"));
    }

    fn assert_none(self) {
        let n = self.list.len();
        assert!(n == 0, "{n} finding(s) of kind \"{}\":\n{}", self.kind, self.list.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

/// One setting as clap knows it.
struct Setting {
    long: String,
    /// The default clap fills in ("" when none).
    default: String,
    help: String,
}

/// Every `QUEUEGATE_*` setting of every subcommand, by variable.
fn settings() -> BTreeMap<String, Setting> {
    let mut out = BTreeMap::new();
    let mut cmd = Cli::command();
    cmd.build();
    let mut stack = vec![cmd];
    while let Some(cmd) = stack.pop() {
        for a in cmd.get_arguments() {
            let (Some(env), Some(long)) = (a.get_env(), a.get_long()) else { continue };
            let default = a.get_default_values().iter().map(|v| v.to_string_lossy()).collect::<Vec<_>>().join(",");
            let help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default();
            out.insert(env.to_string_lossy().into_owned(), Setting { long: long.to_owned(), default, help });
        }
        stack.extend(cmd.get_subcommands().cloned());
    }
    out
}

/// Every long flag of every subcommand (`--insecure-dev`, `--dry-run`, `--help`).
fn flags() -> BTreeSet<String> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = BTreeSet::new();
    let mut stack = vec![cmd];
    while let Some(cmd) = stack.pop() {
        out.extend(cmd.get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}")));
        stack.extend(cmd.get_subcommands().cloned());
    }
    out
}

/// Whether the code takes `value` for the setting: clap parses it and validation names no
/// problem with this setting (the other settings keep their defaults, under --insecure-dev).
fn accepted(env: &str, s: &Setting, value: &str) -> bool {
    let flag = format!("--{}={value}", s.long);
    let Ok(cli) = Cli::try_parse_from(["queuegate", "--insecure-dev", &flag]) else { return false };
    match cli.invocation() {
        Invocation::Serve(_, settings) => settings.validate_for(Role::Run).map_or_else(|e| e.setting != env, |_| true),
        other => panic!("not a serving invocation: {other:?}"),
    }
}

/// Names of the environment variables the scripts and the Makefile read.
fn script_variables() -> BTreeSet<String> {
    let name = Regex::new(r"QUEUEGATE_[A-Z0-9_]+").unwrap();
    let mut files = walk(&root().join("scripts"));
    files.push(root().join("Makefile"));
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| name.find_iter(&t).map(|m| m.as_str().to_owned()).collect::<Vec<_>>())
        .collect()
}

fn num(s: &str) -> u64 {
    s.replace(',', "").parse().unwrap()
}

/// Checks one row of a settings table (`| variable | flag | default | meaning |`).
fn check_setting_row(f: &mut Findings, doc: &str, no: usize, cells: &[String], env: &str, s: &Setting) {
    let plain = |c: &str| c.replace('`', "").trim().to_owned();
    let flag = plain(cells[1].split_whitespace().next().unwrap_or(""));
    if flag != format!("--{}", s.long) {
        f.add(doc, no, format!("{env}: the flag is --{}, the table says {flag}", s.long));
    }
    let default = plain(&cells[2]);
    let first = default.split_whitespace().next().unwrap_or("").trim_end_matches(',').replace(',', "");
    let none = ["—", "-", "unset", "off", "(none)", "none"].contains(&first.as_str()) || default.is_empty();
    let code = if s.default == "false" { "" } else { s.default.as_str() };
    let ok = match code {
        "" => none || s.help.contains(&format!("[default: {first}")),
        d => first == d,
    };
    if !ok {
        f.add(doc, no, format!("{env}: the default is {:?}, the table says {default:?}", s.default));
    }
    let meaning = cells[3..].join("|");
    static RANGE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d[\d,]*)\s*\.\.\s*(\d[\d,]*)").unwrap());
    let range = &*RANGE;
    // "(at least 3600)", "at most 600000)": a bound, where "at least 10 in a row" is prose.
    static AT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"at (least|most) (\d[\d,]*)(?:\)|;|$)").unwrap());
    let at_least = &*AT;
    let mut stated = false;
    for c in range.captures_iter(&meaning) {
        stated = true;
        let (lo, hi) = (num(&c[1]), num(&c[2]));
        for (v, want) in [(lo, true), (hi, true), (hi + 1, false)].into_iter().chain((lo > 0).then(|| (lo - 1, false)))
        {
            if accepted(env, s, &v.to_string()) != want {
                let does = if want { "refuses" } else { "takes" };
                f.add(doc, no, format!("{env}: the table says {lo}..{hi}, the code {does} {v}"));
            }
        }
    }
    for c in at_least.captures_iter(&meaning) {
        stated = true;
        let (bound, v) = (&c[1], num(&c[2]));
        let (inside, outside) = if bound == "least" { (v, v.checked_sub(1)) } else { (v, Some(v + 1)) };
        if !accepted(env, s, &inside.to_string()) || outside.is_some_and(|o| accepted(env, s, &o.to_string())) {
            f.add(doc, no, format!("{env}: the table says at {bound} {v}, the code's bound differs"));
        }
    }
    // A bound set by another setting ("at most `QUEUEGATE_WEBHOOK_RETRY_MAX_MS`") is stated too.
    static RELATIVE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"at (least|most) [^;)]*QUEUEGATE_").unwrap());
    stated |= RELATIVE.is_match(&meaning);
    if !stated && s.default.parse::<u64>().is_ok() {
        for v in ["0", "4294967295"] {
            if !accepted(env, s, v) {
                f.add(doc, no, format!("{env}: the code refuses {v}, the table states no bound"));
            }
        }
    }
}

#[test]
fn every_setting_a_doc_names_exists_with_the_flag_default_and_bounds_of_the_code() {
    let settings = settings();
    let scripts = script_variables();
    let name = Regex::new(r"QUEUEGATE_[A-Z0-9_]+").unwrap();
    let mut f = Findings::new("setting");
    let mut tabled = BTreeSet::new();
    for doc in docs() {
        let lines = doc.lines();
        let mut header = "";
        for (i, l) in lines.iter().enumerate() {
            for m in name.find_iter(l.text) {
                let n = m.as_str();
                // A name in a link's anchor (`#…-queuegate_admin_addr-…`) is lower case: not matched.
                if !settings.contains_key(n) && !scripts.contains(n) {
                    f.add(
                        &doc.path,
                        l.no,
                        format!("{n} is no setting (src/config) nor read by scripts/ or the Makefile"),
                    );
                }
            }
            if !l.text.starts_with('|') {
                continue;
            }
            if i == 0 || !lines[i - 1].text.starts_with('|') {
                header = l.text;
            }
            let cells: Vec<String> = l.text.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect();
            let env = cells[0].trim_matches('`');
            if !header.replace(' ', "").starts_with("|variable|flag|default|") || !env.starts_with("QUEUEGATE_") {
                continue;
            }
            if let Some(s) = settings.get(env) {
                tabled.insert(env.to_owned());
                check_setting_row(&mut f, &doc.path, l.no, &cells, env, s);
            }
        }
    }
    // A flag in code (`--insecure-dev`, `--kafka-property …`): queuegate's, or one that an
    // example program, a script or a test passes or takes.
    let mut others = walk(&root().join("examples"));
    others.extend(walk(&root().join("scripts")));
    others.extend(walk(&root().join("tests")).into_iter().filter(|f| !f.ends_with("docs.rs")));
    let others: String = others.iter().filter_map(|f| std::fs::read_to_string(f).ok()).collect();
    let flags = flags();
    let flag = Regex::new(r"^--[a-z][a-z0-9-]*").unwrap();
    for doc in docs() {
        for (no, code) in doc.code() {
            for m in code.split(" ; ").filter_map(|span| flag.find(span)) {
                if !flags.contains(m.as_str()) && !others.contains(m.as_str()) {
                    f.add(
                        &doc.path,
                        no,
                        format!("{} is no flag of queuegate, nor in examples/, scripts/ or tests/", m.as_str()),
                    );
                }
            }
        }
    }
    for env in settings.keys().filter(|e| !tabled.contains(*e)) {
        f.add("docs/reference-settings.md", 0, format!("{env} has no row in a settings table"));
    }
    f.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// Every metric the registry registers: name, type, labels, help.
fn metrics() -> Vec<[String; 4]> {
    let m = queuegate::metrics::Metrics::new();
    m.collectors()
        .iter()
        .map(|c| {
            let d = c.desc()[0];
            let kind = format!("{:?}", c.collect()[0].get_field_type()).to_lowercase();
            let labels = d.variable_labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ");
            [d.fq_name.clone(), kind, labels, d.help.clone()]
        })
        .collect()
}

const METRICS_BEGIN: &str = "<!-- metrics table: generated from src/metrics.rs by tests/docs.rs; `DOCS_WRITE=1 cargo test --test docs` rewrites it -->";
const METRICS_END: &str = "<!-- end of the metrics table -->";

fn metrics_table() -> String {
    let mut t = String::from("| metric | type | labels | what it says |\n|---|---|---|---|\n");
    for [name, kind, labels, help] in metrics() {
        let help = help.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;");
        t.push_str(&format!("| `{name}` | {kind} | {labels} | {help} |\n"));
    }
    t
}

#[test]
fn the_metrics_table_is_the_one_the_registry_generates() {
    let rel = "docs/reference-metrics.md";
    let text = read(rel);
    let (Some(b), Some(e)) = (text.find(METRICS_BEGIN), text.find(METRICS_END)) else {
        panic!("{rel} has no metrics table between\n{METRICS_BEGIN}\n{METRICS_END}");
    };
    let start = b + METRICS_BEGIN.len() + 1;
    let want = metrics_table();
    if std::env::var_os("DOCS_WRITE").is_some() {
        let new = format!("{}{want}{}", &text[..start], &text[e..]);
        std::fs::write(root().join(rel), new).unwrap();
    } else {
        assert!(
            text[start..e] == want,
            "{rel}'s metrics table is not what src/metrics.rs registers; `DOCS_WRITE=1 cargo test --test docs` rewrites it"
        );
    }
}

#[test]
fn every_metric_a_doc_names_is_registered() {
    let mut known = BTreeSet::new();
    for [name, kind, ..] in metrics() {
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                known.insert(format!("{name}{suffix}"));
            }
        }
        known.insert(name);
    }
    // nginx variables and locations (`$queuegate_…`, `@queuegate_…`), anchors and the gate's
    // query parameters are not metrics.
    let name = Regex::new(r"(?:^|[^\w$@#/-])(queuegate_[a-z0-9_]+)").unwrap();
    let mut f = Findings::new("metric");
    for doc in docs() {
        for l in doc.lines() {
            for c in name.captures_iter(l.text) {
                let n = &c[1];
                if ![queuegate::gate::TOKEN_PARAM, queuegate::gate::binding::BIND_PARAM].contains(&n)
                    && !known.contains(n)
                {
                    f.add(&doc.path, l.no, format!("{n} is not a metric the registry registers (src/metrics.rs)"));
                }
            }
        }
    }
    f.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Routes

/// Whether `path` (a doc's, with `{placeholders}` or example ids) is `pattern` (an OpenAPI
/// path), or with `prefix`, the start of it.
fn path_matches(pattern: &str, path: &str, prefix: bool) -> bool {
    let want: Vec<&str> = pattern.split('/').collect();
    let got: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if got.len() > want.len() || (!prefix && got.len() != want.len()) {
        return false;
    }
    want.iter().zip(&got).all(|(w, g)| w == g || (w.starts_with('{') && !g.is_empty()))
}

#[test]
fn every_route_a_doc_names_is_in_the_openapi_document() {
    let doc: serde_json::Value = serde_json::from_str(queuegate::openapi::OPENAPI).unwrap();
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|k| *k != "servers" && *k != "parameters") {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    let route =
        Regex::new(r#"(?:\b(GET|POST|PUT|PATCH|DELETE|HEAD)\s+|^|[^A-Za-z/])((?:/admin)?/v1/[^\s`'"()\[\]<>,;|]*)"#)
            .unwrap();
    let mut f = Findings::new("route");
    for d in docs() {
        for l in d.lines() {
            for c in route.captures_iter(l.text) {
                let raw = &c[2];
                let mut path = raw.split(['?', '#']).next().unwrap().trim_end_matches(['.', ':', '*']).to_owned();
                let prefix = path.contains('…') || path.contains("...") || path.ends_with('/');
                if let Some(i) = path.find(['…', '.']).filter(|_| prefix) {
                    path.truncate(i);
                }
                let method = c.get(1).map(|m| m.as_str());
                let found =
                    routes.iter().any(|(m, p)| method.is_none_or(|want| want == m) && path_matches(p, &path, prefix));
                if !found {
                    let what = method.map_or(String::new(), |m| format!("{m} "));
                    f.add(
                        &d.path,
                        l.no,
                        format!("{what}{raw} is not in the OpenAPI document (src/gateway/openapi.json)"),
                    );
                }
            }
        }
    }
    f.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Redis keys

/// The name each kind of key has after the concert's hash tag (`qg:{c}:<name>…`), or after the
/// prefix for keys outside any concert (`qg:concerts`), from the key scheme itself.
fn key_names() -> BTreeSet<String> {
    use clap::ValueEnum;
    use queuegate::ids::{ConcertId, Lane};
    use queuegate::store::keys::{webhook_part, Keys, Part};
    let k = Keys::new("qg");
    let c = ConcertId::parse("c").unwrap();
    let lane = Lane::parse("vip").unwrap();
    let mut keys: Vec<String> = Part::value_variants().iter().map(|p| k.lane(&c, &lane, *p)).collect();
    keys.extend(webhook_part::ALL.iter().map(|p| k.webhook(&c, "w", p)));
    keys.push(k.admit_request(&c, None));
    keys.push(k.pow_nonce(&c, "n"));
    keys.push(k.code_failures_of_client(&c, "client"));
    keys.push(k.code_failures_of_lane(&c, &lane));
    keys.push(k.registry());
    keys.iter().map(|key| key_name(key.strip_prefix("qg:").unwrap())).collect()
}

/// `{c}:whdue:w` → `whdue`, `{c}:waiting@vip` → `waiting`, `concerts` → `concerts`.
fn key_name(rest: &str) -> String {
    let rest = rest.split_once("}:").map_or(rest, |(_, r)| r);
    rest.split([':', '@']).next().unwrap().to_owned()
}

#[test]
fn every_redis_key_a_doc_names_is_in_the_key_scheme_and_redis_md_lists_every_key() {
    let names = key_names();
    let key = Regex::new(r"\bqg:((?:\{[^}\s]*\}:)?[a-z]+)").unwrap();
    let mut f = Findings::new("redis key");
    let mut in_redis_md = BTreeSet::new();
    for doc in docs() {
        for l in doc.lines() {
            for c in key.captures_iter(l.text) {
                let n = key_name(&c[1]);
                if !names.contains(&n) {
                    f.add(&doc.path, l.no, format!("qg:{} is no key of the key scheme (src/store/keys.rs)", &c[1]));
                } else if doc.path == "docs/reference-redis.md" && l.text.starts_with('|') {
                    in_redis_md.insert(n);
                }
            }
        }
    }
    for n in names.difference(&in_redis_md) {
        f.add("docs/reference-redis.md", 0, format!("the key table has no row for the {n} key (src/store/keys.rs)"));
    }
    f.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Make targets, files, alerts

#[test]
fn every_make_target_a_doc_names_is_in_the_makefile() {
    let target = Regex::new(r"(?m)^([a-z][a-z0-9-]*):").unwrap();
    let makefile = read("Makefile");
    let targets: BTreeSet<&str> = target.captures_iter(&makefile).map(|c| c.get(1).unwrap().as_str()).collect();
    let call = Regex::new(r"(?:^|[\s(;&|])make\s+([a-z][a-z0-9-]*)").unwrap();
    let mut f = Findings::new("make target");
    for doc in docs() {
        for (no, code) in doc.code() {
            for c in call.captures_iter(&code) {
                if !targets.contains(&c[1]) {
                    f.add(&doc.path, no, format!("make {} is not a target of the Makefile", &c[1]));
                }
            }
        }
    }
    f.assert_none();
}

/// Whether `segment` matches the glob `pattern` (`*` for any run of characters).
fn glob(pattern: &str, segment: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == segment,
        Some((head, tail)) => {
            segment.starts_with(head)
                && (0..=segment.len() - head.len()).any(|i| glob(tail, &segment[head.len() + i..]))
        }
    }
}

/// Whether a repository path exists; `*` globs within a segment, `{a,b}` means both.
fn exists(rel: &str) -> bool {
    if let (Some(open), Some(close)) = (rel.find('{'), rel.find('}')) {
        let alternatives = &rel[open + 1..close];
        if alternatives.contains(',') {
            return alternatives.split(',').all(|a| exists(&format!("{}{a}{}", &rel[..open], &rel[close + 1..])));
        }
    }
    let mut here = vec![root()];
    for seg in rel.split('/').filter(|s| !s.is_empty()) {
        here = here
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(dir)
                    .into_iter()
                    .flatten()
                    .map(|e| e.unwrap().path())
                    .filter(|p| glob(seg, &p.file_name().unwrap().to_string_lossy()))
            })
            .collect();
    }
    !here.is_empty()
}

#[test]
fn every_script_and_file_a_doc_names_exists() {
    let path = Regex::new(
        r#"(?:^|[\s`'"(\[])((?:scripts|deploy|docs|src|tests|grafana|loadtest|examples|\.ci|\.config)/[^\s`'"()\[\]<>,;|]*)"#,
    )
    .unwrap();
    let mut f = Findings::new("file");
    for doc in docs() {
        for l in doc.lines() {
            for c in path.captures_iter(l.text) {
                let p = c[1].split(['#', '?']).next().unwrap();
                let p = p.split("::").next().unwrap().trim_end_matches(['.', ':', '!']);
                // `examples/x` is the example program examples/x.rs.
                let example = p.starts_with("examples/") && exists(&format!("{p}.rs"));
                if !exists(p) && !example {
                    f.add(&doc.path, l.no, format!("{p} does not exist"));
                }
            }
        }
    }
    f.assert_none();
}

/// Every alert of grafana/alerts.yml: its name and its runbook link.
fn alerts() -> Vec<(String, String)> {
    let rules: serde_json::Value = serde_norway::from_str(&read("grafana/alerts.yml")).unwrap();
    let mut out = Vec::new();
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().unwrap().to_owned();
            out.push((name, r["annotations"]["runbook"].as_str().unwrap_or("").to_owned()));
        }
    }
    out
}

#[test]
fn every_alert_a_doc_names_is_a_rule_and_every_rule_is_documented() {
    let alerts = alerts();
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    let alert = Regex::new(r"\bQueuegate[A-Z][A-Za-z0-9]*").unwrap();
    let mut f = Findings::new("alert");
    let mut named = BTreeSet::new();
    for doc in docs() {
        for l in doc.lines() {
            for m in alert.find_iter(l.text) {
                if names.contains(m.as_str()) {
                    named.insert(m.as_str().to_owned());
                } else {
                    f.add(&doc.path, l.no, format!("{} is not an alert of grafana/alerts.yml", m.as_str()));
                }
            }
        }
    }
    for (name, runbook) in &alerts {
        if !named.contains(name) {
            f.add("grafana/alerts.yml", 0, format!("{name} is named in no doc"));
        }
        if let Err(e) = resolve(&root(), runbook) {
            f.add("grafana/alerts.yml", 0, format!("{name}'s runbook {runbook:?}: {e}"));
        }
    }
    f.assert_none();
}

// ---------------------------------------------------------------------------------------------
// Links and anchors

/// The anchor GitHub gives a heading: its text as rendered, lower case, without punctuation,
/// spaces made hyphens.
fn slug(heading: &str) -> String {
    static LINK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[([^\]]*)\]\([^)]*\)").unwrap());
    LINK.replace_all(heading, "$1")
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file: its headings' slugs (repeats get -1, -2, …) and any HTML ids.
fn anchors(file: &Path) -> BTreeSet<String> {
    static HEADING: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^#{1,6}\s+(.*?)\s*#*\s*$").unwrap());
    static ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"(?:id|name)="([^"]+)""#).unwrap());
    let (heading, id) = (&*HEADING, &*ID);
    let doc = Doc { path: String::new(), text: std::fs::read_to_string(file).unwrap_or_default() };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for l in doc.lines() {
        out.extend(id.captures_iter(l.text).map(|c| c[1].to_owned()));
        let Some(c) = heading.captures(l.text).filter(|_| !l.fenced) else { continue };
        let s = slug(&c[1]);
        let n = seen.entry(s.clone()).or_insert(0);
        out.insert(if *n == 0 { s } else { format!("{s}-{n}") });
        *n += 1;
    }
    out
}

/// Resolves a link target from `dir`: the file must exist, and an #anchor must be one of its
/// headings.
fn resolve(dir: &Path, target: &str) -> Result<(), String> {
    let (file, anchor) = target.split_once('#').map_or((target, None), |(f, a)| (f, Some(a)));
    let mut path = dir.to_path_buf();
    for c in Path::new(file).components() {
        match c {
            Component::ParentDir => {
                path.pop();
            }
            Component::Normal(n) => path.push(n),
            _ => {}
        }
    }
    if !path.exists() {
        return Err(format!("{file} does not exist"));
    }
    if let Some(a) = anchor.filter(|_| path.extension().is_some_and(|e| e == "md")) {
        if !anchors(&path).contains(a) {
            return Err(format!(
                "{} has no heading with the anchor #{a}",
                path.strip_prefix(root()).unwrap_or(&path).display()
            ));
        }
    }
    Ok(())
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let code = Regex::new("`[^`]*`").unwrap();
    let link = Regex::new(r"\]\(([^)\s]+)(?:\s[^)]*)?\)|^\[[^\]]+\]:\s*(\S+)").unwrap();
    let scheme = Regex::new(r"^[a-z][a-z0-9+.-]*:").unwrap();
    let mut f = Findings::new("link");
    for doc in docs() {
        let dir = doc.dir();
        for l in doc.lines().into_iter().filter(|l| !l.fenced) {
            let text = code.replace_all(l.text, "");
            for c in link.captures_iter(&text) {
                let target = c.get(1).or(c.get(2)).unwrap().as_str();
                if scheme.is_match(target) {
                    continue;
                }
                let target = if target.starts_with('#') {
                    format!("{}{target}", doc.path.rsplit('/').next().unwrap())
                } else {
                    target.to_owned()
                };
                if let Err(e) = resolve(&dir, &target) {
                    f.add(&doc.path, l.no, e);
                }
            }
        }
    }
    f.assert_none();
}

#[test]
fn anchors_are_the_ones_github_makes() {
    let dir = std::env::temp_dir().join(format!("queuegate-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a.md");
    let heading = "## Admin listener (`QUEUEGATE_ADMIN_ADDR`, default 127.0.0.1:8081)";
    std::fs::write(
        &file,
        format!("# HTTP — the listeners\n{heading}\n## Sold out\n## Sold out\n```\n# not a heading\n```\n"),
    )
    .unwrap();
    let want =
        ["admin-listener-queuegate_admin_addr-default-1270018081", "http--the-listeners", "sold-out", "sold-out-1"];
    assert_eq!(anchors(&file), want.iter().map(|s| s.to_string()).collect());
    assert!(resolve(&dir, "a.md#sold-out-1").is_ok());
    assert!(resolve(&dir, "a.md#not-a-heading").is_err());
    assert!(resolve(&dir, "b.md").is_err());
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------------
// The threat model

#[test]
fn every_row_of_the_threat_model_names_tests_that_exist() {
    let sources: Vec<(String, String)> = walk(&root().join("tests"))
        .into_iter()
        .chain(walk(&root().join("src")))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    let span = Regex::new("`([a-z_0-9:]+)`").unwrap();
    let doc = docs().into_iter().find(|d| d.path == "docs/explain-security.md").unwrap();
    let mut f = Findings::new("threat model");
    let mut rows = 0;
    let mut header = false;
    for l in doc.lines() {
        if l.text.starts_with("| asset | attacker | control | test |") {
            header = true;
            continue;
        }
        if !header || l.text.starts_with("|---") {
            continue;
        }
        if !l.text.starts_with('|') {
            break;
        }
        rows += 1;
        let cells: Vec<&str> = l.text.trim_matches('|').split(" | ").collect();
        let Some(test) = cells.get(3).filter(|_| cells.len() == 4) else {
            f.add(&doc.path, l.no, "a row without its four cells (asset, attacker, control, test)");
            continue;
        };
        let names: Vec<&str> = span.captures_iter(test).map(|c| c.get(1).unwrap().as_str()).collect();
        if names.is_empty() {
            f.add(&doc.path, l.no, "a row that names no test");
        }
        for name in names {
            let parts: Vec<&str> = name.split("::").collect();
            let func = format!("fn {}(", parts.last().unwrap());
            // `module::…::test`: the test is in a file named after its first module.
            let found =
                sources.iter().any(|(stem, text)| (parts.len() == 1 || stem == parts[0]) && text.contains(&func));
            if !found {
                f.add(&doc.path, l.no, format!("the test {name} does not exist"));
            }
        }
    }
    assert!(rows >= 10, "docs/explain-security.md's threat model has {rows} rows");
    f.assert_none();
}
