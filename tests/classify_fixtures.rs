//! Every fixture written by a real writer (scripts/make-fixtures.sh), and torn
//! copies of each, is classified as the manifest says: category, MIME, and
//! completeness.

use ckptfs::classify::classify_bytes;

#[derive(serde::Deserialize)]
struct Entry {
    file: String,
    category: String,
    mime: String,
    complete: Option<bool>,
}

#[test]
fn fixtures_from_real_writers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let manifest: Vec<Entry> =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    // Every writer of scripts/make-fixtures.sh: one missing there (a skipped
    // writer) fails here.
    assert!(
        manifest.len() >= 78,
        "{} fixtures: a writer is missing; run scripts/make-fixtures.sh with every writer installed",
        manifest.len()
    );
    let mut failures = Vec::new();
    for e in &manifest {
        let data = std::fs::read(dir.join(&e.file)).unwrap();
        let c = classify_bytes(&data, &e.file);
        if c.category != e.category || c.mime != e.mime || c.complete != e.complete {
            failures.push(format!(
                "{}: got ({}, {}, {:?} {}) want ({}, {}, {:?})",
                e.file, c.category, c.mime, c.complete, c.why, e.category, e.mime, e.complete
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} misclassified:\n{}",
        failures.len(),
        manifest.len(),
        failures.join("\n")
    );
}
