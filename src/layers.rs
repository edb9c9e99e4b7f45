//! The layers of `src/`, checked: every `crate::` path in the code of a folder must lead to that
//! folder, to a folder its row of the table in docs/development.md ("Layers") allows, or be the
//! one exception written there. So the picture in the documentation is the one CI enforces:
//! changing who may use whom means changing that table.
//!
//! Comments and string literals are skipped; `crate::{a, b}` groups and `super::` paths that
//! climb out of a folder are followed. Files at the top of `src/` (`lib.rs` and the request
//! path, log macros and property tests) wire the folders together and may use any of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The one use across the layers, from the file it is in to the path it names (see the docs).
const EXCEPTION: (&str, &str) = ("src/conf/directives.rs", "expose::handler");

/// Items at the crate root that any folder may name: the module's handle nginx knows it by
/// (every C file of an nginx module names its `ngx_module_t`).
const ROOT_ITEMS: &[&str] = &["HttpStatusAlertModule"];

/// `folder -> folders it may use`, from the table under "## Layers" in docs/development.md:
/// rows `| \`folder\` | \`a\`, \`b\` | ... |`, `—` for none.
fn table(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("docs/development.md has a \"## Layers\" section");
    let mut rows = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[0].is_empty() {
            continue;
        }
        let Some(folder) = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        let uses = cells[2]
            .split(',')
            .map(|u| u.trim().trim_matches('`').to_string())
            .filter(|u| !u.is_empty() && u != "—")
            .collect();
        rows.insert(folder.to_string(), uses);
    }
    rows
}

/// Rust source with comments and the contents of string and char literals blanked out (lines
/// are kept, so positions still count lines).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let keep = |out: &mut String, bytes: &[u8]| {
        for &c in bytes {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            keep(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            // Nested, as Rust's are.
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            keep(&mut out, &rest[..j]);
            i += j;
        } else if let Some(len) = raw_string_len(rest) {
            keep(&mut out, &rest[..len]);
            i += len;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let len = (j + 1).min(rest.len());
            keep(&mut out, &rest[..len]);
            i += len;
        } else if let Some(len) = char_literal_len(rest) {
            keep(&mut out, &rest[..len]);
            i += len;
        } else {
            let c = src[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Length of a raw string literal (`r"..."`, `r#"..."#`, `br"..."`) at the start of `s`.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = usize::from(s.first() == Some(&b'b'));
    if s.get(start) != Some(&b'r') {
        return None;
    }
    let hashes = s[start + 1..].iter().take_while(|&&c| c == b'#').count();
    let open = start + 1 + hashes;
    if s.get(open) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat(b'#').take(hashes))
        .collect();
    let end = s[open + 1..]
        .windows(close.len())
        .position(|w| w == close)?;
    Some(open + 1 + end + close.len())
}

/// Length of a char literal (`'a'`, `'\n'`, `'"'`) at the start of `s`; `None` for a lifetime.
fn char_literal_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'\'') {
        return None;
    }
    if s.get(1) == Some(&b'\\') {
        let end = s[2..].iter().position(|&c| c == b'\'')?;
        return Some(end + 3);
    }
    // One character (1 to 4 bytes of UTF-8), then the closing quote.
    let width = match s.get(1)? {
        c if *c < 0x80 => 1,
        c if *c >= 0xF0 => 4,
        c if *c >= 0xE0 => 3,
        _ => 2,
    };
    (s.get(1 + width) == Some(&b'\'')).then_some(width + 2)
}

/// The inline modules (`mod tests { ... }`) of `code`: their names and byte spans.
fn inline_modules(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = code[i..].find("mod ").map(|p| p + i) {
        i = at + 4;
        if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
            continue;
        }
        let name: String = code[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = code[i + name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        for (j, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((name.clone(), open, open + j));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The paths, from the crate root, that `code` (one file's code, comments blanked) names:
/// `crate::a::b` and the members of `crate::{a::b, c}` groups as `a::b`, `c`, with their
/// lines; `super::` paths that leave the folder, resolved against the file's module `module`
/// (e.g. `["notify", "delivery"]`) and the inline modules they are written in.
fn crate_paths(code: &str, module: &[String]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let ident_at = |i: usize| i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let path_at = |i: usize| -> String {
        code[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_string()
    };
    let line_of = |i: usize| code[..i].matches('\n').count() + 1;
    let mut i = 0;
    while let Some(at) = code[i..].find("crate::").map(|p| p + i) {
        i = at + "crate::".len();
        // `$crate::` in macros and `foo_crate::` are no paths of this crate.
        if ident_at(at) || (at > 0 && b[at - 1] == b'$') {
            continue;
        }
        if b.get(i) == Some(&b'{') {
            out.extend(group(code, i).into_iter().map(|p| (line_of(at), p)));
        } else {
            out.push((line_of(at), path_at(i)));
        }
    }
    let inline = inline_modules(code);
    let mut i = 0;
    while let Some(at) = code[i..].find("super::").map(|p| p + i) {
        i = at + "super::".len();
        if ident_at(at) || code[..at].trim_end().ends_with("::") {
            continue;
        }
        // The module the path is written in: the file's, and the inline ones around it.
        let mut module = module.to_vec();
        module.extend(
            inline
                .iter()
                .filter(|(_, open, close)| (*open..*close).contains(&at))
                .map(|(name, _, _)| name.clone()),
        );
        let mut ups = 1;
        while code[i..].starts_with("super::") {
            ups += 1;
            i += "super::".len();
        }
        if ups <= module.len().saturating_sub(1) {
            // Within the folder.
            continue;
        }
        let base = module[..module.len().saturating_sub(ups)].join("::");
        let tails = if b.get(i) == Some(&b'{') {
            group(code, i)
        } else {
            vec![path_at(i)]
        };
        for tail in tails {
            let full = [base.as_str(), tail.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("::");
            out.push((line_of(at), full));
        }
    }
    out
}

/// The paths of a `{a::b, c::{d, e}}` group starting at `open` (the `{`), as `a::b`, `c`.
fn group(code: &str, open: usize) -> Vec<String> {
    let mut depth = 0;
    let mut start = open + 1;
    let mut out = Vec::new();
    for (j, c) in code[open..].char_indices() {
        let j = open + j;
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let item = code[start..j].trim();
                if !item.is_empty() {
                    let head: String = item
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    out.push(head.trim_end_matches(':').to_string());
                }
                start = j + 1;
                if c == '}' {
                    break;
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file below `src/`: `src/notify/delivery/mod.rs` -> notify, delivery.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .skip(1)
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every use that breaks the table, as `file:line: path (rule)`.
fn violations(root: &Path, layers: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .expect("below the root")
            .to_path_buf();
        let shown = relative.to_string_lossy().to_string();
        let module = module_of(&relative);
        if relative.components().count() < 3 {
            continue; // a file at the top of src/: wiring, tests
        }
        let folder = &module[0];
        let Some(allowed) = layers.get(folder) else {
            found.push(format!(
                "{shown}: folder \"{folder}\" has no row in the layer table"
            ));
            continue;
        };
        let code = code_only(&std::fs::read_to_string(&file).expect("readable source"));
        for (line, path) in crate_paths(&code, &module) {
            let target = path.split("::").next().unwrap_or_default();
            let ok = target == folder
                || allowed.contains(target)
                || ROOT_ITEMS.contains(&target)
                || (shown == EXCEPTION.0 && path.starts_with(EXCEPTION.1));
            if !ok {
                found.push(format!(
                    "{shown}:{line}: crate::{path} ({folder} may use: {})",
                    allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    found
}

/// A cycle among the allowed uses, if the table has one.
fn cycle(layers: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        layers: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in layers.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, layers, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    layers
        .keys()
        .find_map(|k| visit(k, layers, &mut Vec::new(), &mut done))
}

#[test]
fn every_folder_uses_only_the_folders_its_layer_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/development.md"))
        .expect("docs/development.md is readable");
    let layers = table(&doc);
    assert!(
        layers.len() >= 9,
        "the layer table lists every folder: {layers:?}"
    );
    assert_eq!(cycle(&layers), None, "the layer table allows a cycle");
    assert!(
        doc.contains(EXCEPTION.0) && doc.contains(EXCEPTION.1),
        "the exception is written down in docs/development.md"
    );
    let found = violations(root, &layers);
    assert!(
        found.is_empty(),
        "uses across the layers of docs/development.md:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_what_the_compiler_sees() {
    let code = code_only(
        "use crate::zone::Zone; // crate::driver in a comment\n\
         let s = \"crate::driver::x\"; let c = '\"'; let r = r#\"crate::helper\"#;\n\
         /* crate::notify /* nested */ crate::expose */ fn f<'a>(x: &'a str) {}\n\
         use crate::{conf::MainConf, vocab::{event, text}};\n\
         use super::super::probe::Reason;\n\
         mod tests { use super::*; mod deeper { use super::super::super::super::zone::Zone; } }\n",
    );
    let module = ["evaluate".to_string(), "firing".to_string()];
    let paths: Vec<String> = crate_paths(&code, &module)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        paths,
        [
            "zone::Zone",
            "conf::MainConf",
            "vocab",
            "probe::Reason",
            "zone::Zone"
        ]
    );
    let nested = [
        "notify".to_string(),
        "delivery".to_string(),
        "worker".to_string(),
    ];
    assert!(crate_paths("use super::policy::later;", &nested).is_empty());
    let doc = "# D\n## Layers\n| folder | may use |\n|---|---|\n| `vocab` | — |\n\
               | `zone` | `vocab` |\n## Tests\n| `x` | `y` |\n";
    let t = table(doc);
    assert_eq!(t.len(), 2);
    assert!(t["vocab"].is_empty() && t["zone"].contains("vocab"));
    let mut looped = t.clone();
    looped.get_mut("vocab").unwrap().insert("zone".into());
    assert!(cycle(&looped).is_some());
}
