//! The nft script that takes the table from one [`Ruleset`] to the next.
//!
//! The first sync replaces the whole table in one atomic transaction. Later
//! syncs are partial, as kube-proxy's are: only chains whose rules changed are
//! flushed and rewritten, map and set elements are added and deleted one by
//! one, and chains and sets no longer planned are flushed and deleted.

use super::plan::{Chain, Ruleset, Set};
use std::fmt::Write;

/// The nft script (for `nft -f -`) that programs `new`, given that `old` is
/// what the table holds now (None: unknown, so replace the table).
pub fn transaction(old: Option<&Ruleset>, new: &Ruleset) -> String {
    match old {
        Some(old) if old.table == new.table => partial(old, new),
        _ => full(new),
    }
}

/// The script that deletes the table (and succeeds when it is already gone).
pub fn delete_table(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

fn full(new: &Ruleset) -> String {
    let t = &new.table;
    let mut out = String::new();
    // Adding first makes the delete succeed when the table does not exist yet.
    out.push_str(&delete_table(t));
    let _ = writeln!(
        out,
        "add table ip {t} {{ comment \"rules for skiff's service proxy\" ; }}"
    );
    for (name, set) in &new.sets {
        add_set(&mut out, t, name, set);
    }
    for (name, chain) in &new.chains {
        add_chain(&mut out, t, name, chain);
    }
    for (name, chain) in &new.chains {
        add_rules(&mut out, t, name, chain);
    }
    for (set, elements) in &new.elements {
        for (key, value) in elements {
            add_element(&mut out, t, set, key, value);
        }
    }
    out
}

fn partial(old: &Ruleset, new: &Ruleset) -> String {
    let t = &new.table;
    let mut out = String::new();
    // 1. New sets and chains exist before anything refers to them.
    for (name, set) in &new.sets {
        // Set names carry everything in their declaration (an affinity
        // set's timeout is in its hash), so a known name needs nothing.
        if !old.sets.contains_key(name) {
            add_set(&mut out, t, name, set);
        }
    }
    for (name, chain) in &new.chains {
        if !old.chains.contains_key(name) {
            add_chain(&mut out, t, name, chain);
        }
    }
    // 2. Elements that went away or changed their value.
    for (set, elements) in &old.elements {
        if !new.sets.contains_key(set) {
            continue; // deleted with the set
        }
        let now = new.elements.get(set);
        for (key, value) in elements {
            if now.and_then(|m| m.get(key)) != Some(value) {
                let _ = writeln!(out, "delete element ip {t} {set} {{ {key} }}");
            }
        }
    }
    // 3. Chains whose rules changed, and the new chains' rules.
    for (name, chain) in &new.chains {
        match old.chains.get(name) {
            Some(before) if before.rules == chain.rules => {}
            Some(_) => {
                let _ = writeln!(out, "flush chain ip {t} {name}");
                add_rules(&mut out, t, name, chain);
            }
            None => add_rules(&mut out, t, name, chain),
        }
    }
    // 4. Elements that are new or changed their value.
    for (set, elements) in &new.elements {
        let before = old.elements.get(set);
        for (key, value) in elements {
            if before.and_then(|m| m.get(key)) != Some(value) {
                add_element(&mut out, t, set, key, value);
            }
        }
    }
    // 5. Stale chains: emptied first, so that none refers to another, then deleted.
    let stale: Vec<&String> = old
        .chains
        .keys()
        .filter(|c| !new.chains.contains_key(*c))
        .collect();
    for name in &stale {
        let _ = writeln!(out, "flush chain ip {t} {name}");
    }
    for name in &stale {
        let _ = writeln!(out, "delete chain ip {t} {name}");
    }
    // 6. Stale sets, now that no rule refers to them.
    for (name, set) in &old.sets {
        if !new.sets.contains_key(name) {
            delete_set(&mut out, t, name, set);
        }
    }
    out
}

fn add_set(out: &mut String, t: &str, name: &str, set: &Set) {
    let kind = if set.map { "map" } else { "set" };
    let _ = writeln!(out, "add {kind} ip {t} {name} {{ {} }}", set.spec);
}

fn delete_set(out: &mut String, t: &str, name: &str, set: &Set) {
    let kind = if set.map { "map" } else { "set" };
    let _ = writeln!(out, "delete {kind} ip {t} {name}");
}

fn add_chain(out: &mut String, t: &str, name: &str, chain: &Chain) {
    match &chain.hook {
        Some(hook) => {
            let _ = writeln!(out, "add chain ip {t} {name} {{ {hook} }}");
        }
        None => {
            let _ = writeln!(out, "add chain ip {t} {name}");
        }
    }
}

fn add_rules(out: &mut String, t: &str, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        let _ = writeln!(out, "add rule ip {t} {name} {rule}");
    }
}

fn add_element(out: &mut String, t: &str, set: &str, key: &str, value: &str) {
    if value.is_empty() {
        let _ = writeln!(out, "add element ip {t} {set} {{ {key} }}");
    } else {
        let _ = writeln!(out, "add element ip {t} {set} {{ {key} : {value} }}");
    }
}
