//! Tidy checks: ARCHITECTURE.md's invariants that can be read off the source, run by
//! `cargo test` (and so by `cargo xtask test`), so that the map cannot drift from the code.
//!
//! Checked here: the engine and the model depend on no I/O crate; the clock is read only where
//! ARCHITECTURE.md says; every library and binary module says what it owns in a `//!` header;
//! nothing outside `crates/store` names the store's sea-orm entities (each table has one owner
//! module there); ARCHITECTURE.md's table of crate dependencies matches the manifests, and
//! every path it names exists.

use std::fs;
use std::path::{Path, PathBuf};

/// The repository's root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Every `.rs` file under `dir`, sorted so that failures read the same on every run.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The library and binary sources: what the invariants speak of (tests are free to read the
/// clock and to skip headers).
fn source_files() -> Vec<PathBuf> {
    let root = root();
    let mut files = rust_files(&root.join("src"));
    let Ok(crates) = fs::read_dir(root.join("crates")) else {
        return files;
    };
    for c in crates.flatten() {
        files.extend(rust_files(&c.path().join("src")));
    }
    files.sort();
    files
}

fn relative(p: &Path) -> String {
    let root = root();
    p.strip_prefix(&root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// A file's text up to its unit-test module, which may read the clock like any test.
fn non_test_part(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The `[dependencies]` table of a manifest, as dependency names.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut names = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                names.push(name.split('.').next().unwrap_or(name).to_string());
            }
        }
    }
    names
}

/// Fails naming the crate and the dependencies it has beyond `allowed`.
fn depends_only_on(krate: &str, allowed: &[&str]) {
    let path = format!("crates/{krate}/Cargo.toml");
    let manifest = fs::read_to_string(root().join(&path)).expect("the manifest is readable");
    let deps = dependencies(&manifest);
    assert!(!deps.is_empty(), "no [dependencies] found in {path}");
    let impure: Vec<&String> = deps
        .iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    assert!(
        impure.is_empty(),
        "crates/{krate} depends on {impure:?}; ARCHITECTURE.md says it does no I/O"
    );
}

#[test]
fn engine_depends_on_no_io_crate() {
    // The engine is pure: what it may use is listed here, so that adding a database, network,
    // file or async runtime crate to it is a decision this test makes visible.
    depends_only_on(
        "engine",
        &[
            "rekey-model",
            "chrono",
            "serde",
            "thiserror",
            "toml",
            "uuid",
        ],
    );
}

#[test]
fn model_depends_on_no_io_crate() {
    // The vocabulary at the bottom: parsing and serialising values, nothing else.
    depends_only_on("model", &["email_address", "serde", "thiserror", "uuid"]);
}

#[test]
fn the_clock_is_read_only_where_architecture_md_says() {
    // ARCHITECTURE.md: the clock is read by the CLI edge and, through `rekey_store::db::now`
    // (the one library function that calls the system clock), by the server per request, the
    // scheduler's loop and the store's bookkeeping.
    const READS_SYSTEM_CLOCK: &[&str] = &["crates/store/src/db.rs"];
    const CALLS_DB_NOW: &[&str] = &[
        "crates/server/src/lib.rs",
        "crates/service/src/scheduler.rs",
    ];
    let mut wrong = Vec::new();
    for f in source_files() {
        let rel = relative(&f);
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        let text = non_test_part(&text);
        let cli = rel.starts_with("src/cmd/");
        let store = rel.starts_with("crates/store/src/");
        let system = ["Utc::now", "SystemTime::now", "Local::now"]
            .iter()
            .any(|p| text.contains(p));
        if system && !cli && !READS_SYSTEM_CLOCK.contains(&rel.as_str()) {
            wrong.push(format!("{rel} reads the system clock"));
        }
        if text.contains("db::now") && !cli && !store && !CALLS_DB_NOW.contains(&rel.as_str()) {
            wrong.push(format!("{rel} calls rekey_store::db::now"));
        }
    }
    assert!(
        wrong.is_empty(),
        "clock read outside the places ARCHITECTURE.md names (pass `now` in instead):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_module_says_what_it_owns() {
    let missing: Vec<String> = source_files()
        .iter()
        .filter(|f| {
            fs::read_to_string(f)
                .map(|t| !t.trim_start().starts_with("//!"))
                .unwrap_or(true)
        })
        .map(|f| relative(f))
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` header saying what they own:\n{}",
        missing.join("\n")
    );
}

/// Every `.rs` file of the repository — sources, tests, benches, fuzz targets, xtask — except
/// build output and version control.
fn all_rust_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            if p.is_dir() {
                if name != "target" && name != ".git" {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn only_the_store_names_its_entities() {
    // ARCHITECTURE.md: every table has one owner module in `crates/store`; other crates and
    // every test call its typed functions. The store's `entity` module is private, so the
    // compiler refuses such a use; this names the invariant and catches it in text the
    // compiler does not see (a test behind a feature, a doc example).
    const PATTERNS: &[&str] = &["rekey_store::entity", "store::entity::", "entity::{"];
    let this = relative(&root().join("xtask/src/tidy.rs"));
    let mut wrong = Vec::new();
    for f in all_rust_files() {
        let rel = relative(&f);
        if rel.starts_with("crates/store/") || rel == this {
            continue;
        }
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let named = PATTERNS.iter().any(|p| line.contains(p))
                || (line.contains("entity::") && !line.contains("sea_orm::entity::"));
            if named {
                wrong.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the store's entities named outside crates/store (call the owning module's typed \
         functions, e.g. rekey_store::outbox, rekey_store::timers; test-only writes are in \
         rekey_store::testing):\n{}",
        wrong.join("\n")
    );
}

/// The rekey crates a manifest's `[dependencies]` names, sorted.
fn rekey_dependencies(manifest_path: &str) -> Vec<String> {
    let manifest =
        fs::read_to_string(root().join(manifest_path)).expect("the manifest is readable");
    let mut deps: Vec<String> = dependencies(&manifest)
        .into_iter()
        .filter(|d| d.starts_with("rekey-"))
        .collect();
    deps.sort();
    deps
}

#[test]
fn architecture_md_lists_each_crates_dependencies() {
    // The table under the diagram is the map a reader follows from a request to the store;
    // an edge that exists in a manifest but not there (or the reverse) fails here.
    let doc = fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut rows = 0;
    let mut wrong = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, name, deps, _] = cells.as_slice() else {
            continue;
        };
        let Some(name) = name.strip_prefix('`').and_then(|n| n.split('`').next()) else {
            continue;
        };
        let manifest = match name {
            "rekey" => "Cargo.toml".to_string(),
            n => match n.strip_prefix("rekey-") {
                Some(dir) => format!("crates/{dir}/Cargo.toml"),
                None => continue,
            },
        };
        rows += 1;
        let mut listed: Vec<String> = deps
            .split(',')
            .map(str::trim)
            .filter(|d| d.starts_with("rekey-"))
            .map(str::to_string)
            .collect();
        listed.sort();
        let actual = rekey_dependencies(&manifest);
        if listed != actual {
            wrong.push(format!(
                "{name}: ARCHITECTURE.md says {listed:?}, {manifest} has {actual:?}"
            ));
        }
    }
    let crates = fs::read_dir(root().join("crates"))
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert_eq!(
        rows,
        crates + 1,
        "ARCHITECTURE.md's dependency table should have a row per crate and one for `rekey`"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_path_architecture_md_names_exists() {
    // A map that names a file which moved sends the newcomer nowhere.
    let doc = fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let prefixes = [
        "crates/",
        "src/",
        "xtask/",
        "tests/",
        "migrations/",
        "workflows/",
        "docs/",
    ];
    let mut named = 0;
    let mut missing = Vec::new();
    for (i, part) in doc.split('`').enumerate() {
        if i % 2 == 0 || part.contains(' ') || !prefixes.iter().any(|p| part.starts_with(p)) {
            continue;
        }
        let path = part.split(':').next().unwrap_or(part);
        named += 1;
        let exists = if let Some((dir, pattern)) = path.rsplit_once("/*") {
            // `src/cmd/*.rs`: the directory holds at least one such file.
            fs::read_dir(root().join(dir))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(pattern))
                })
                .unwrap_or(false)
        } else {
            root().join(path).exists()
        };
        if !exists {
            missing.push(path.to_string());
        }
    }
    assert!(named > 10, "found only {named} paths in ARCHITECTURE.md");
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn the_checks_see_the_sources() {
    // Guards the tests above against passing vacuously because the tree was not found.
    let files = source_files();
    assert!(
        files.len() > 20,
        "found only {} source files under {}",
        files.len(),
        root().display()
    );
    assert!(
        files
            .iter()
            .any(|f| relative(f) == "crates/store/src/db.rs")
    );
    let all = all_rust_files();
    assert!(
        all.iter().any(|f| relative(f) == "tests/mail_smtp.rs")
            && all
                .iter()
                .any(|f| relative(f).starts_with("crates/service/tests/")),
        "the entity check does not see the tests"
    );
}
