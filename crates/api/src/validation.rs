//! Per-kind validation, returning every invalid field with its path, as the
//! Kubernetes apiserver does before storing an object.
//!
//! Objects arrive in their v1 wire form, already defaulted and type-checked;
//! every accessor here still tolerates missing or mistyped fields.
//!
//! # Layout
//! - name and string-format checks (`is_dns1123_label`, `is_qualified_name`, …) with
//!   Kubernetes' exact messages;
//! - [`parse_quantity`]: resource quantities, comparable exactly enough for requests/limits;
//! - ObjectMeta rules shared by every kind;
//! - pod spec and pod template rules;
//! - one function per kind, dispatched from [`validate_create`] and [`validate_update`].

use crate::catalog::ResourceInfo;
use crate::field::FieldError;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

type Errs = Vec<FieldError>;

// ---------------------------------------------------------------------------
// Paths and accessors
// ---------------------------------------------------------------------------

fn ch(p: &str, c: &str) -> String {
    if p.is_empty() {
        c.to_string()
    } else {
        format!("{p}.{c}")
    }
}

fn ix(p: &str, i: usize) -> String {
    format!("{p}[{i}]")
}

fn key(p: &str, k: &str) -> String {
    format!("{p}[{k}]")
}

fn gs<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn gss<'a>(v: &'a Value, k: &str) -> &'a str {
    gs(v, k).unwrap_or("")
}

fn garr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn gobj<'a>(v: &'a Value, k: &str) -> Option<&'a Map<String, Value>> {
    v.get(k).and_then(Value::as_object)
}

fn gi(v: &Value, k: &str) -> Option<i64> {
    v.get(k).and_then(Value::as_i64)
}

fn present(v: &Value, k: &str) -> bool {
    v.get(k).is_some_and(|x| !x.is_null())
}

fn gb(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}

const NULL: Value = Value::Null;

fn sub<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.get(k).unwrap_or(&NULL)
}

/// The pairs of a string map (`labels`, `data`); non-string values read as "".
fn str_map(v: &Value, k: &str) -> Vec<(String, String)> {
    gobj(v, k)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// String formats (k8s.io/apimachinery/pkg/util/validation)
// ---------------------------------------------------------------------------

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const ENV_NAME_MSG: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";
const FIELD_IMMUTABLE: &str = "field is immutable";
const NONNEGATIVE: &str = "must be greater than or equal to 0";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
/// The largest total size of a ConfigMap's or Secret's data.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;
/// The largest total size of an object's annotations.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Kubernetes' `RegexError`: the message, examples and the regex (with its double spaces).
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn match_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && lower_alnum(b[0])
        && lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| lower_alnum(c) || c == b'-')
}

fn match_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(match_dns1123_label)
}

/// Matches `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn match_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Errors for a DNS-1123 label (`my-name`), as `IsDNS1123Label` reports them.
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !match_dns1123_label(s) {
        if match_dns1123_subdomain(s) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Errors for a DNS-1123 subdomain (`example.com`), as `IsDNS1123Subdomain` reports them.
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !match_dns1123_subdomain(s) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Errors for a DNS-1035 label (`my-name`, starting with a letter), as `IsDNS1035Label` reports them.
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !(match_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Errors for a qualified name (`example.com/MyName`): label and annotation keys.
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !match_qualified_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Errors for a label value (empty, or a qualified name part of at most 63 characters).
pub fn is_valid_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !s.is_empty() && !match_qualified_part(s) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Errors for a ConfigMap or Secret data key.
pub fn is_config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(regex_error(
            CONFIG_KEY_MSG,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if s == "." {
        errs.push("must not be '.'".to_string());
    } else if s == ".." {
        errs.push("must not be '..'".to_string());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Errors for a port number.
pub fn is_valid_port_num(p: i64) -> Vec<String> {
    if (1..=65535).contains(&p) {
        Vec::new()
    } else {
        vec![PORT_RANGE.to_string()]
    }
}

/// Errors for an IANA service (port) name.
pub fn is_valid_port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len_error(15));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Errors for an environment variable name (the relaxed rule of Kubernetes 1.32).
pub fn is_env_var_name(s: &str) -> Vec<String> {
    if s.chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control() && c != '=')
    {
        Vec::new()
    } else {
        vec![ENV_NAME_MSG.to_string()]
    }
}

/// Errors for a name used as a URL path segment.
pub fn is_path_segment_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s == "." || s == ".." {
        errs.push(format!("may not be '{s}'"));
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

fn is_valid_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

fn is_valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
}

fn invalid_each(path: &str, value: &str, msgs: Vec<String>) -> Errs {
    msgs.into_iter()
        .map(|m| FieldError::invalid(path, value, m))
        .collect()
}

fn nonneg(errs: &mut Errs, v: &Value, k: &str, path: &str) {
    if let Some(n) = gi(v, k)
        && n < 0
    {
        errs.push(FieldError::invalid(ch(path, k), n, NONNEGATIVE));
    }
}

fn immutable(errs: &mut Errs, new: &Value, old: &Value, path: &str) {
    if new != old {
        errs.push(FieldError::invalid(path, new.clone(), FIELD_IMMUTABLE));
    }
}

/// Checks a string against an enumeration: empty is Required, others NotSupported.
fn enum_field(errs: &mut Errs, v: &Value, k: &str, path: &str, allowed: &[&str], required: bool) {
    match gs(v, k) {
        None | Some("") => {
            if required {
                errs.push(FieldError::required(ch(path, k), ""));
            }
        }
        Some(s) if allowed.contains(&s) => {}
        Some(s) => errs.push(FieldError::not_supported(ch(path, k), s, allowed)),
    }
}

// ---------------------------------------------------------------------------
// Quantities (k8s.io/apimachinery/pkg/api/resource)
// ---------------------------------------------------------------------------

/// A parsed resource quantity, held exactly in units of 10⁻⁹ (rounded up below that),
/// enough to compare cpu and memory values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity {
    /// The value times 10⁹.
    pub nanos: i128,
}

impl Quantity {
    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.nanos % 1_000_000_000 == 0
    }
}

/// The message Kubernetes gives for a string that is not a quantity.
pub const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Parses a Kubernetes quantity: `[+-]digits[.digits]` then a binary suffix
/// (Ki Mi Gi Ti Pi Ei), a decimal suffix (n u m "" k M G T P E) or an exponent (`e3`, `E-2`).
pub fn parse_quantity(s: &str) -> Result<Quantity, String> {
    let err = || QUANTITY_FORMAT_ERROR.to_string();
    let s = s.trim();
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(err());
    }
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other if other.starts_with(['e', 'E']) => {
            let e = &other[1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err());
            }
            (e.parse::<i32>().map_err(|_| err())?, 0)
        }
        _ => return Err(err()),
    };
    let too_big = || "quantity is too large".to_string();
    let mut mantissa: i128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(c - b'0')))
            .ok_or_else(too_big)?;
    }
    let scale = exp10 + 9 - frac_part.len() as i32;
    let mut nanos = if scale >= 0 {
        let p = 10i128.checked_pow(scale as u32).ok_or_else(too_big)?;
        mantissa.checked_mul(p).ok_or_else(too_big)?
    } else {
        let p = 10i128.checked_pow((-scale) as u32);
        match p {
            Some(p) => (mantissa + p - 1) / p,
            None => i128::from(mantissa > 0),
        }
    };
    nanos = nanos.checked_mul(1i128 << exp2).ok_or_else(too_big)?;
    Ok(Quantity {
        nanos: if neg { -nanos } else { nanos },
    })
}

/// A quantity as it appears on the wire: a string, or a bare JSON number.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// ObjectMeta (k8s.io/apimachinery/pkg/api/validation)
// ---------------------------------------------------------------------------

/// How a kind's `metadata.name` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    Subdomain,
    Label1123,
    Label1035,
    PathSegment,
}

impl NameRule {
    fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => is_dns1123_subdomain(name),
            NameRule::Label1123 => is_dns1123_label(name),
            NameRule::Label1035 => is_dns1035_label(name),
            NameRule::PathSegment => is_path_segment_name(name),
        }
    }
    /// Checks a `generateName`: a trailing '-' is allowed there.
    fn check_prefix(self, prefix: &str) -> Vec<String> {
        match self {
            NameRule::PathSegment => is_path_segment_name(prefix),
            _ => {
                let masked = match prefix.strip_suffix('-') {
                    Some(p) => format!("{p}a"),
                    None => prefix.to_string(),
                };
                self.check(&masked)
            }
        }
    }
}

fn name_rule(kind: &str) -> NameRule {
    match kind {
        "Namespace" | "StatefulSet" => NameRule::Label1123,
        "Service" => NameRule::Label1035,
        "HorizontalPodAutoscaler" => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// `ValidateLabels`: qualified-name keys and label values, all reported at `path`.
fn validate_labels(labels: &[(String, String)], path: &str) -> Errs {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(invalid_each(path, k, is_qualified_name(k)));
        errs.extend(invalid_each(path, v, is_valid_label_value(v)));
    }
    errs
}

fn validate_annotations(annotations: &[(String, String)], path: &str) -> Errs {
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in annotations {
        errs.extend(invalid_each(path, k, is_qualified_name(&k.to_lowercase())));
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

fn validate_finalizers(meta: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    let list = garr(meta, "finalizers");
    for (i, f) in list.iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        let p = ix(path, i);
        errs.extend(invalid_each(&p, f, is_qualified_name(f)));
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
            errs.push(FieldError::invalid(
                &p,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    let has = |n: &str| list.iter().any(|f| f.as_str() == Some(n));
    if has("orphan") && has("foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            Value::Array(list.to_vec()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

fn validate_owner_references(meta: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    let mut controller: Option<&str> = None;
    for r in garr(meta, "ownerReferences") {
        let api_version = gss(r, "apiVersion");
        if api_version.is_empty() {
            errs.push(FieldError::invalid(
                ch(path, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for (k, what) in [("kind", "kind"), ("name", "name"), ("uid", "uid")] {
            if gss(r, k).is_empty() {
                errs.push(FieldError::invalid(
                    ch(path, k),
                    "",
                    format!("{what} must not be empty"),
                ));
            }
        }
        if gb(r, "controller") {
            let name = gss(r, "name");
            match controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    Value::Array(garr(meta, "ownerReferences").to_vec()),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {name}"
                    ),
                )),
                None => controller = Some(name),
            }
        }
    }
    errs
}

/// `ValidateObjectMeta` for a kind: name, namespace, labels, annotations, finalizers, owners.
fn validate_object_meta(obj: &Value, namespaced: bool, rule: NameRule) -> Errs {
    let meta = sub(obj, "metadata");
    let mut errs = Vec::new();
    let name = gss(meta, "name");
    let generate = gss(meta, "generateName");
    if !generate.is_empty() {
        errs.extend(invalid_each(
            "metadata.generateName",
            generate,
            rule.check_prefix(generate),
        ));
    }
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        errs.extend(invalid_each("metadata.name", name, rule.check(name)));
    }
    let ns = gss(meta, "namespace");
    if namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            errs.extend(invalid_each("metadata.namespace", ns, is_dns1123_label(ns)));
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    nonneg(&mut errs, meta, "generation", "metadata");
    errs.extend(validate_labels(&str_map(meta, "labels"), "metadata.labels"));
    errs.extend(validate_annotations(
        &str_map(meta, "annotations"),
        "metadata.annotations",
    ));
    errs.extend(validate_owner_references(meta, "metadata.ownerReferences"));
    errs.extend(validate_finalizers(meta, "metadata.finalizers"));
    errs
}

/// `ValidateObjectMetaUpdate`: identity fields may not change; finalizers may not be
/// added while deleting; generation may not go down.
fn validate_object_meta_update(obj: &Value, old: &Value) -> Errs {
    let new_meta = sub(obj, "metadata");
    let old_meta = sub(old, "metadata");
    let mut errs = Vec::new();
    if present(old_meta, "deletionTimestamp") {
        let old_f: Vec<&Value> = garr(old_meta, "finalizers").iter().collect();
        let added: Vec<Value> = garr(new_meta, "finalizers")
            .iter()
            .filter(|f| !old_f.contains(f))
            .cloned()
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_string_list(&added)
                ),
            ));
        }
    }
    if let (Some(n), Some(o)) = (gi(new_meta, "generation"), gi(old_meta, "generation"))
        && n < o
    {
        errs.push(FieldError::invalid(
            "metadata.generation",
            n,
            "must not be decremented",
        ));
    }
    for k in ["name", "namespace", "uid", "creationTimestamp"] {
        let n = new_meta.get(k).unwrap_or(&NULL);
        let o = old_meta.get(k).unwrap_or(&NULL);
        let empty = |v: &Value| v.is_null() || v.as_str() == Some("");
        if !(n == o || (empty(n) && empty(o))) {
            let shown = if n.is_null() { json!("") } else { n.clone() };
            errs.push(FieldError::invalid(
                format!("metadata.{k}"),
                shown,
                FIELD_IMMUTABLE,
            ));
        }
    }
    errs
}

/// Renders strings as Go prints a `[]string` with `%q`: `["a" "b"]`.
fn go_string_list(items: &[Value]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|v| format!("{:?}", v.as_str().unwrap_or("")))
        .collect();
    format!("[{}]", parts.join(" "))
}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

fn validate_label_selector(sel: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    if sel.is_null() {
        return errs;
    }
    errs.extend(validate_labels(
        &str_map(sel, "matchLabels"),
        &ch(path, "matchLabels"),
    ));
    for (i, e) in garr(sel, "matchExpressions").iter().enumerate() {
        let p = ix(&ch(path, "matchExpressions"), i);
        let values = garr(e, "values");
        match gss(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        ch(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        ch(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                ch(&p, "operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let k = gss(e, "key");
        errs.extend(invalid_each(&ch(&p, "key"), k, is_qualified_name(k)));
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            errs.extend(invalid_each(
                &ix(&ch(&p, "values"), j),
                v,
                is_valid_label_value(v),
            ));
        }
    }
    errs
}

fn selector_is_empty(sel: &Value) -> bool {
    gobj(sel, "matchLabels").is_none_or(Map::is_empty) && garr(sel, "matchExpressions").is_empty()
}

/// Whether a label selector (`matchLabels` and `matchExpressions`) selects these labels.
pub fn selector_matches(sel: &Value, labels: &Map<String, Value>) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_ok =
        gobj(sel, "matchLabels").is_none_or(|m| m.iter().all(|(k, v)| get(k) == v.as_str()));
    labels_ok
        && garr(sel, "matchExpressions").iter().all(|e| {
            let k = gss(e, "key");
            let in_values = |x: &str| garr(e, "values").iter().any(|v| v.as_str() == Some(x));
            match gss(e, "operator") {
                "In" => get(k).is_some_and(in_values),
                "NotIn" => get(k).is_none_or(|x| !in_values(x)),
                "Exists" => get(k).is_some(),
                "DoesNotExist" => get(k).is_none(),
                _ => false,
            }
        })
}

// ---------------------------------------------------------------------------
// Pod spec (pkg/apis/core/validation)
// ---------------------------------------------------------------------------

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Volume sources in the order Kubernetes counts them.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flexVolume",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "configMap",
    "scaleIO",
    "projected",
    "csi",
    "ephemeral",
    "image",
];

/// Whether the pod spec is a pod's own or a template's (templates need no image).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SpecOf {
    Pod,
    Template,
}

fn validate_port_num_or_name(v: &Value, path: &str) -> Errs {
    match v {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(0);
            is_valid_port_num(n)
                .into_iter()
                .map(|m| FieldError::invalid(path, n, m))
                .collect()
        }
        Value::String(s) => invalid_each(path, s, is_valid_port_name(s)),
        _ => vec![FieldError::required(path, "")],
    }
}

fn validate_volumes(spec: &Value, path: &str) -> (Errs, HashSet<String>) {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, vol) in garr(spec, "volumes").iter().enumerate() {
        let p = ix(path, i);
        let name = gss(vol, "name");
        if name.is_empty() {
            errs.push(FieldError::required(ch(&p, "name"), ""));
        } else {
            errs.extend(invalid_each(&ch(&p, "name"), name, is_dns1123_label(name)));
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(ch(&p, "name"), name));
            }
        }
        errs.extend(validate_volume_source(vol, &p));
    }
    (errs, names)
}

fn validate_volume_source(vol: &Value, p: &str) -> Errs {
    let mut errs = Vec::new();
    let mut found = false;
    for &src in VOLUME_SOURCES {
        if !present(vol, src) {
            continue;
        }
        if found {
            errs.push(FieldError::forbidden(
                ch(p, src),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        found = true;
        let s = sub(vol, src);
        let sp = ch(p, src);
        match src {
            "hostPath" => {
                if gss(s, "path").is_empty() {
                    errs.push(FieldError::required(ch(&sp, "path"), ""));
                }
                enum_field(
                    &mut errs,
                    s,
                    "type",
                    &sp,
                    &[
                        "",
                        "DirectoryOrCreate",
                        "Directory",
                        "FileOrCreate",
                        "File",
                        "Socket",
                        "CharDevice",
                        "BlockDevice",
                    ],
                    false,
                );
            }
            "emptyDir" => {
                if let Some(q) = s.get("sizeLimit").and_then(quantity_text)
                    && parse_quantity(&q).is_ok_and(|q| q.is_negative())
                {
                    errs.push(FieldError::forbidden(
                        ch(&sp, "sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
            "secret" => {
                if gss(s, "secretName").is_empty() {
                    errs.push(FieldError::required(ch(&sp, "secretName"), ""));
                }
                errs.extend(validate_key_to_paths(s, &sp));
            }
            "configMap" => {
                if gss(s, "name").is_empty() {
                    errs.push(FieldError::required(ch(&sp, "name"), ""));
                }
                errs.extend(validate_key_to_paths(s, &sp));
            }
            "persistentVolumeClaim" if gss(s, "claimName").is_empty() => {
                errs.push(FieldError::required(ch(&sp, "claimName"), ""));
            }
            "nfs" => {
                if gss(s, "server").is_empty() {
                    errs.push(FieldError::required(ch(&sp, "server"), ""));
                }
                let path = gss(s, "path");
                if path.is_empty() {
                    errs.push(FieldError::required(ch(&sp, "path"), ""));
                } else if !path.starts_with('/') {
                    errs.push(FieldError::invalid(
                        ch(&sp, "path"),
                        path,
                        "must be an absolute path",
                    ));
                }
            }
            "csi" if gss(s, "driver").is_empty() => {
                errs.push(FieldError::required(ch(&sp, "driver"), ""));
            }
            "downwardAPI" => {
                for (j, item) in garr(s, "items").iter().enumerate() {
                    let ip = ix(&ch(&sp, "items"), j);
                    errs.extend(validate_volume_path(gss(item, "path"), &ch(&ip, "path")));
                }
            }
            "image" if gss(s, "reference").is_empty() => {
                errs.push(FieldError::required(ch(&sp, "reference"), ""));
            }
            _ => {}
        }
    }
    if !found {
        errs.push(FieldError::required(p, "must specify a volume type"));
    }
    errs
}

fn validate_key_to_paths(s: &Value, sp: &str) -> Errs {
    let mut errs = Vec::new();
    for (j, item) in garr(s, "items").iter().enumerate() {
        let ip = ix(&ch(sp, "items"), j);
        if gss(item, "key").is_empty() {
            errs.push(FieldError::required(ch(&ip, "key"), ""));
        }
        errs.extend(validate_volume_path(gss(item, "path"), &ch(&ip, "path")));
    }
    errs
}

/// `validateLocalDescendingPath` plus the required check for item paths.
fn validate_volume_path(path: &str, fp: &str) -> Errs {
    if path.is_empty() {
        return vec![FieldError::required(fp, "")];
    }
    local_descending_path(path, fp)
}

fn local_descending_path(path: &str, fp: &str) -> Errs {
    let mut errs = Vec::new();
    if path.starts_with('/') {
        errs.push(FieldError::invalid(fp, path, "must be a relative path"));
    }
    if path.split('/').any(|seg| seg == "..") {
        errs.push(FieldError::invalid(fp, path, "must not contain '..'"));
    }
    errs
}

fn validate_resources(c: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    let res = sub(c, "resources");
    let mut parsed_limits: Vec<(String, Quantity, String)> = Vec::new();
    for (kind, field_name) in [("limits", "limits"), ("requests", "requests")] {
        let Some(map) = gobj(res, kind) else { continue };
        let base = ch(path, field_name);
        for (name, v) in map {
            let p = key(&base, name);
            errs.extend(validate_container_resource_name(name, &p));
            let Some(text) = quantity_text(v) else {
                errs.push(FieldError::invalid(&p, v.clone(), QUANTITY_FORMAT_ERROR));
                continue;
            };
            let q = match parse_quantity(&text) {
                Ok(q) => q,
                Err(e) => {
                    errs.push(FieldError::invalid(&p, text.as_str(), e));
                    continue;
                }
            };
            if q.is_negative() {
                errs.push(FieldError::invalid(&p, text.as_str(), NONNEGATIVE));
            }
            if name.starts_with("hugepages-") && !q.is_integer() {
                errs.push(FieldError::invalid(&p, text.as_str(), "must be an integer"));
            }
            if kind == "limits" {
                parsed_limits.push((name.clone(), q, text));
            } else if let Some((_, lq, ltext)) = parsed_limits.iter().find(|(n, _, _)| n == name)
                && q > *lq
            {
                errs.push(FieldError::invalid(
                    &p,
                    text.as_str(),
                    format!("must be less than or equal to {name} limit of {ltext}"),
                ));
            }
        }
    }
    errs
}

fn validate_container_resource_name(name: &str, p: &str) -> Errs {
    let mut errs = invalid_each(p, name, is_qualified_name(name));
    if !name.contains('/') {
        let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage")
            || name.starts_with("hugepages-");
        if !standard {
            errs.push(FieldError::invalid(
                p,
                name,
                "must be a standard resource for containers",
            ));
        }
    }
    errs
}

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn validate_env(c: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    for (i, ev) in garr(c, "env").iter().enumerate() {
        let p = ix(path, i);
        let name = gss(ev, "name");
        if name.is_empty() {
            errs.push(FieldError::required(ch(&p, "name"), ""));
        } else {
            errs.extend(invalid_each(&ch(&p, "name"), name, is_env_var_name(name)));
        }
        let Some(from) = ev.get("valueFrom").filter(|v| !v.is_null()) else {
            continue;
        };
        let fp = ch(&p, "valueFrom");
        let sources: Vec<&str> = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .into_iter()
        .filter(|k| present(from, k))
        .collect();
        if sources.is_empty() {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        }
        if !gss(ev, "value").is_empty() && !sources.is_empty() {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not be specified when `value` is not empty",
            ));
        }
        if sources.len() > 1 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
            continue;
        }
        let Some(&src) = sources.first() else {
            continue;
        };
        let s = sub(from, src);
        let sp = ch(&fp, src);
        match src {
            "fieldRef" => {
                let f = gss(s, "fieldPath");
                if f.is_empty() {
                    errs.push(FieldError::required(ch(&sp, "fieldPath"), ""));
                } else if !(ENV_FIELD_PATHS[2..].contains(&f)
                    || f.starts_with("metadata.labels['")
                    || f.starts_with("metadata.annotations['"))
                {
                    errs.push(FieldError::not_supported(
                        ch(&sp, "fieldPath"),
                        f,
                        &ENV_FIELD_PATHS[2..],
                    ));
                }
            }
            "resourceFieldRef" => {
                if gss(s, "resource").is_empty() {
                    errs.push(FieldError::required(ch(&sp, "resource"), ""));
                }
            }
            _ => {
                let name_key = "name";
                if gss(s, name_key).is_empty() {
                    errs.push(FieldError::required(ch(&sp, name_key), ""));
                }
                let k = gss(s, "key");
                if k.is_empty() {
                    errs.push(FieldError::required(ch(&sp, "key"), ""));
                } else {
                    errs.extend(invalid_each(&ch(&sp, "key"), k, is_config_map_key(k)));
                }
            }
        }
    }
    for (i, ef) in garr(c, "envFrom").iter().enumerate() {
        let p = ix(&ch(path.trim_end_matches(".env"), "envFrom"), i);
        let prefix = gss(ef, "prefix");
        if !prefix.is_empty() {
            errs.extend(invalid_each(
                &ch(&p, "prefix"),
                prefix,
                is_env_var_name(prefix),
            ));
        }
        let sources: Vec<&str> = ["configMapRef", "secretRef"]
            .into_iter()
            .filter(|k| present(ef, k))
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::invalid(
                &p,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            [one] => {
                let n = gss(sub(ef, one), "name");
                let np = ch(&ch(&p, one), "name");
                if n.is_empty() {
                    errs.push(FieldError::required(np, ""));
                } else {
                    errs.extend(invalid_each(&np, n, is_dns1123_subdomain(n)));
                }
            }
            _ => errs.push(FieldError::invalid(
                &p,
                "",
                "may not have more than one field specified at a time",
            )),
        }
    }
    errs
}

fn validate_handler(h: &Value, path: &str, kinds: &[&str]) -> Errs {
    let mut errs = Vec::new();
    let mut found = false;
    for &k in kinds {
        if !present(h, k) {
            continue;
        }
        if found {
            errs.push(FieldError::forbidden(
                ch(path, k),
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        found = true;
        let s = sub(h, k);
        let sp = ch(path, k);
        match k {
            "exec" if garr(s, "command").is_empty() => {
                errs.push(FieldError::required(ch(&sp, "command"), ""));
            }
            "httpGet" => {
                if gss(s, "path").is_empty() {
                    errs.push(FieldError::required(ch(&sp, "path"), ""));
                }
                errs.extend(validate_port_num_or_name(sub(s, "port"), &ch(&sp, "port")));
                enum_field(&mut errs, s, "scheme", &sp, &["HTTP", "HTTPS"], false);
            }
            "tcpSocket" => {
                errs.extend(validate_port_num_or_name(sub(s, "port"), &ch(&sp, "port")));
            }
            "grpc" => {
                let port = gi(s, "port").unwrap_or(0);
                errs.extend(
                    is_valid_port_num(port)
                        .into_iter()
                        .map(|m| FieldError::invalid(ch(&sp, "port"), port, m)),
                );
            }
            "sleep" if gi(s, "seconds").is_some_and(|n| n <= 0) => {
                errs.push(FieldError::invalid(
                        ch(&sp, "seconds"),
                        gi(s, "seconds").unwrap_or(0),
                        "must be greater than 0 and less than terminationGracePeriodSeconds (30). Enable AllowSleepActionZeroValue feature gate for zero sleep.",
                    ));
            }
            _ => {}
        }
    }
    if !found {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    errs
}

fn validate_probe(probe: &Value, path: &str, must_be_one: bool) -> Errs {
    let mut errs = validate_handler(probe, path, &["exec", "httpGet", "tcpSocket", "grpc"]);
    for k in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonneg(&mut errs, probe, k, path);
    }
    if let Some(n) = gi(probe, "terminationGracePeriodSeconds")
        && n <= 0
    {
        errs.push(FieldError::invalid(
            ch(path, "terminationGracePeriodSeconds"),
            n,
            "must be greater than 0",
        ));
    }
    if must_be_one
        && let Some(n) = gi(probe, "successThreshold")
        && n != 1
    {
        errs.push(FieldError::invalid(
            ch(path, "successThreshold"),
            n,
            "must be 1",
        ));
    }
    errs
}

fn validate_lifecycle(c: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    let lc = sub(c, "lifecycle");
    for hook in ["postStart", "preStop"] {
        if let Some(h) = lc.get(hook).filter(|h| !h.is_null()) {
            errs.extend(validate_handler(
                h,
                &ch(path, hook),
                &["exec", "httpGet", "tcpSocket", "sleep"],
            ));
        }
    }
    errs
}

/// Checks one container; `names` collects names across init and app containers.
fn validate_container(
    c: &Value,
    p: &str,
    names: &mut HashSet<String>,
    volumes: &HashSet<String>,
    of: SpecOf,
) -> Errs {
    let mut errs = Vec::new();
    let name = gss(c, "name");
    let np = ch(p, "name");
    if name.is_empty() {
        errs.push(FieldError::required(&np, ""));
    } else {
        errs.extend(invalid_each(&np, name, is_dns1123_label(name)));
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(&np, name));
        }
    }
    let image = gss(c, "image");
    if of == SpecOf::Pod && image.is_empty() {
        errs.push(FieldError::required(ch(p, "image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            ch(p, "image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    // Ports.
    let mut port_names = HashSet::new();
    for (i, port) in garr(c, "ports").iter().enumerate() {
        let pp = ix(&ch(p, "ports"), i);
        let pn = gss(port, "name");
        if !pn.is_empty() {
            errs.extend(invalid_each(&ch(&pp, "name"), pn, is_valid_port_name(pn)));
            if !port_names.insert(pn.to_string()) {
                errs.push(FieldError::duplicate(ch(&pp, "name"), pn));
            }
        }
        match gi(port, "containerPort") {
            None | Some(0) => errs.push(FieldError::required(ch(&pp, "containerPort"), "")),
            Some(n) => errs.extend(
                is_valid_port_num(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(ch(&pp, "containerPort"), n, m)),
            ),
        }
        if let Some(n) = gi(port, "hostPort").filter(|n| *n != 0) {
            errs.extend(
                is_valid_port_num(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(ch(&pp, "hostPort"), n, m)),
            );
        }
        enum_field(&mut errs, port, "protocol", &pp, PROTOCOLS, true);
    }
    errs.extend(validate_env(c, &ch(p, "env")));
    // Volume mounts.
    let mut mount_paths = HashSet::new();
    for (i, m) in garr(c, "volumeMounts").iter().enumerate() {
        let mp = ix(&ch(p, "volumeMounts"), i);
        let vname = gss(m, "name");
        if vname.is_empty() {
            errs.push(FieldError::required(ch(&mp, "name"), ""));
        } else if !volumes.contains(vname) {
            errs.push(FieldError::not_found(ch(&mp, "name"), vname));
        }
        let path = gss(m, "mountPath");
        if path.is_empty() {
            errs.push(FieldError::required(ch(&mp, "mountPath"), ""));
        } else if !mount_paths.insert(path.to_string()) {
            errs.push(FieldError::invalid(
                ch(&mp, "mountPath"),
                path,
                "must be unique",
            ));
        }
        let sp = gss(m, "subPath");
        if !sp.is_empty() {
            errs.extend(local_descending_path(sp, &ch(&mp, "subPath")));
        }
        enum_field(
            &mut errs,
            m,
            "mountPropagation",
            &mp,
            &["Bidirectional", "HostToContainer", "None"],
            false,
        );
    }
    errs.extend(validate_resources(c, &ch(p, "resources")));
    enum_field(
        &mut errs,
        c,
        "imagePullPolicy",
        p,
        &["Always", "IfNotPresent", "Never"],
        true,
    );
    enum_field(
        &mut errs,
        c,
        "terminationMessagePolicy",
        p,
        &["File", "FallbackToLogsOnError"],
        true,
    );
    errs
}

fn validate_tolerations(spec: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    for (i, t) in garr(spec, "tolerations").iter().enumerate() {
        let p = ix(path, i);
        let k = gss(t, "key");
        let op = gss(t, "operator");
        if !k.is_empty() {
            errs.extend(invalid_each(&ch(&p, "key"), k, is_qualified_name(k)));
        } else if op != "Exists" {
            errs.push(FieldError::invalid(
                ch(&p, "operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let effect = gss(t, "effect");
        if present(t, "tolerationSeconds") && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                ch(&p, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = gss(t, "value");
        match op {
            "" | "Equal" => errs.extend(invalid_each(
                &ch(&p, "value"),
                value,
                is_valid_label_value(value),
            )),
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        ch(&p, "operator"),
                        t.clone(),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => {
                errs.push(FieldError::not_supported(
                    ch(&p, "operator"),
                    other,
                    &["Equal", "Exists"],
                ));
            }
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                ch(&p, "effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
    errs
}

/// `ValidatePodSpec` at `path` (`spec` or `spec.template.spec`).
fn validate_pod_spec(spec: &Value, path: &str, of: SpecOf) -> Errs {
    let (mut errs, volumes) = validate_volumes(spec, &ch(path, "volumes"));
    let mut names = HashSet::new();
    let containers = garr(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(ch(path, "containers"), ""));
    }
    for (i, c) in garr(spec, "initContainers").iter().enumerate() {
        let p = ix(&ch(path, "initContainers"), i);
        errs.extend(validate_container(c, &p, &mut names, &volumes, of));
        let sidecar = gs(c, "restartPolicy") == Some("Always");
        match gs(c, "restartPolicy") {
            None | Some("Always") => {}
            Some(other) => errs.push(FieldError::not_supported(
                ch(&p, "restartPolicy"),
                other,
                &["Always"],
            )),
        }
        for k in [
            "lifecycle",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
        ] {
            let Some(v) = c.get(k).filter(|v| !v.is_null()) else {
                continue;
            };
            if !sidecar {
                errs.push(FieldError::forbidden(
                    ch(&p, k),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            } else if k == "lifecycle" {
                errs.extend(validate_lifecycle(c, &ch(&p, k)));
            } else {
                errs.extend(validate_probe(v, &ch(&p, k), k != "readinessProbe"));
            }
        }
    }
    for (i, c) in containers.iter().enumerate() {
        let p = ix(&ch(path, "containers"), i);
        errs.extend(validate_container(c, &p, &mut names, &volumes, of));
        if present(c, "restartPolicy") {
            errs.push(FieldError::forbidden(
                ch(&p, "restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
        if present(c, "lifecycle") {
            errs.extend(validate_lifecycle(c, &ch(&p, "lifecycle")));
        }
        for k in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(v) = c.get(k).filter(|v| !v.is_null()) {
                errs.extend(validate_probe(v, &ch(&p, k), k != "readinessProbe"));
                if k == "readinessProbe" && present(v, "terminationGracePeriodSeconds") {
                    errs.push(FieldError::invalid(
                        ch(&ch(&p, k), "terminationGracePeriodSeconds"),
                        v["terminationGracePeriodSeconds"].clone(),
                        "must not be set for readinessProbes",
                    ));
                }
            }
        }
    }
    if of == SpecOf::Template && present(spec, "ephemeralContainers") {
        errs.push(FieldError::forbidden(
            ch(path, "ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    enum_field(
        &mut errs,
        spec,
        "restartPolicy",
        path,
        &["Always", "OnFailure", "Never"],
        true,
    );
    enum_field(
        &mut errs,
        spec,
        "dnsPolicy",
        path,
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        true,
    );
    errs.extend(validate_labels(
        &str_map(spec, "nodeSelector"),
        &ch(path, "nodeSelector"),
    ));
    for k in ["hostname", "subdomain"] {
        let v = gss(spec, k);
        if !v.is_empty() {
            errs.extend(invalid_each(&ch(path, k), v, is_dns1123_label(v)));
        }
    }
    for k in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let v = gss(spec, k);
        if !v.is_empty() {
            errs.extend(invalid_each(&ch(path, k), v, is_dns1123_subdomain(v)));
        }
    }
    errs.extend(validate_tolerations(spec, &ch(path, "tolerations")));
    if let Some(n) = gi(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        errs.push(FieldError::invalid(
            ch(path, "activeDeadlineSeconds"),
            n,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(dns) = spec.get("dnsConfig").filter(|v| !v.is_null()) {
        if garr(dns, "nameservers").is_empty() && gs(spec, "dnsPolicy") == Some("None") {
            errs.push(FieldError::required(
                ch(&ch(path, "dnsConfig"), "nameservers"),
                "must provide at least one DNS nameserver when DNSPolicy is None",
            ));
        }
        for (i, ns) in garr(dns, "nameservers").iter().enumerate() {
            let s = ns.as_str().unwrap_or("");
            if !is_valid_ip(s) {
                errs.push(FieldError::invalid(
                    ix(&ch(&ch(path, "dnsConfig"), "nameservers"), i),
                    s,
                    "must be a valid IP address",
                ));
            }
        }
    } else if gs(spec, "dnsPolicy") == Some("None") {
        errs.push(FieldError::required(
            ch(path, "dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    errs
}

/// `ValidatePodTemplateSpec` at `path` (e.g. `spec.template`).
fn validate_pod_template(t: &Value, path: &str) -> Errs {
    let meta = sub(t, "metadata");
    let mut errs = validate_labels(
        &str_map(meta, "labels"),
        &ch(&ch(path, "metadata"), "labels"),
    );
    errs.extend(validate_annotations(
        &str_map(meta, "annotations"),
        &ch(&ch(path, "metadata"), "annotations"),
    ));
    errs.extend(validate_pod_spec(
        sub(t, "spec"),
        &ch(path, "spec"),
        SpecOf::Template,
    ));
    errs
}

// ---------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------

const POD_UPDATABLE: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn validate_pod(obj: &Value) -> Errs {
    validate_pod_spec(sub(obj, "spec"), "spec", SpecOf::Pod)
}

fn validate_pod_update(obj: &Value, old: &Value) -> Errs {
    let mut errs = Vec::new();
    let new_spec = sub(obj, "spec");
    let old_spec = sub(old, "spec");
    for k in ["containers", "initContainers"] {
        if garr(new_spec, k).len() != garr(old_spec, k).len() {
            errs.push(FieldError::forbidden(
                ch("spec", k),
                "pod updates may not add or remove containers",
            ));
        }
    }
    match (
        gi(new_spec, "activeDeadlineSeconds"),
        gi(old_spec, "activeDeadlineSeconds"),
    ) {
        (None, Some(_)) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (Some(n), Some(o)) if n > o => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            n,
            "must be less than or equal to previous value",
        )),
        _ => {}
    }
    // Existing tolerations must stay (their tolerationSeconds may change).
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_tols: Vec<Value> = garr(new_spec, "tolerations").iter().map(strip).collect();
    if garr(old_spec, "tolerations")
        .iter()
        .any(|t| !new_tols.contains(&strip(t)))
    {
        errs.push(FieldError::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    if !errs.is_empty() {
        return errs;
    }
    // Munge the mutable fields of the new spec to the old values, then compare.
    let mut munged = new_spec.clone();
    if let Some(m) = munged.as_object_mut() {
        for k in ["containers", "initContainers"] {
            if let Some(list) = m.get_mut(k).and_then(Value::as_array_mut) {
                for (i, c) in list.iter_mut().enumerate() {
                    let old_image = garr(old_spec, k)
                        .get(i)
                        .and_then(|o| o.get("image"))
                        .cloned();
                    if let Some(c) = c.as_object_mut() {
                        match old_image {
                            Some(img) => c.insert("image".into(), img),
                            None => c.remove("image"),
                        };
                    }
                }
            }
        }
        for k in ["activeDeadlineSeconds", "tolerations"] {
            match old_spec.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
        let old_grace = gi(old_spec, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0)
            && gi(new_spec, "terminationGracePeriodSeconds") == Some(1)
        {
            m.insert("terminationGracePeriodSeconds".into(), json!(old_grace));
        }
        // Scheduling gates may only be removed.
        let old_gates = garr(old_spec, "schedulingGates");
        let new_gates = garr(new_spec, "schedulingGates");
        if new_gates.iter().all(|g| old_gates.contains(g)) {
            match old_spec.get("schedulingGates") {
                Some(v) => m.insert("schedulingGates".into(), v.clone()),
                None => m.remove("schedulingGates"),
            };
        }
    }
    if !same_ignoring_empty(&munged, old_spec) {
        errs.push(FieldError::forbidden("spec", POD_UPDATABLE));
    }
    errs
}

/// Deep equality where a missing field, `null`, `[]` and `{}` count as the same.
fn same_ignoring_empty(a: &Value, b: &Value) -> bool {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().all(|k| {
                let xv = x.get(k).unwrap_or(&NULL);
                let yv = y.get(k).unwrap_or(&NULL);
                (empty(xv) && empty(yv)) || same_ignoring_empty(xv, yv)
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_ignoring_empty(a, b))
        }
        _ => a == b || (empty(a) && empty(b)),
    }
}

// ---------------------------------------------------------------------------
// apps/v1
// ---------------------------------------------------------------------------

fn validate_positive_int_or_percent(v: &Value, path: &str) -> Errs {
    match v {
        Value::String(s) => {
            let ok = s
                .strip_suffix('%')
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
            if ok {
                Vec::new()
            } else {
                vec![FieldError::invalid(
                    path,
                    s.as_str(),
                    "must be an integer or percentage (e.g '5%')",
                )]
            }
        }
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
            vec![FieldError::invalid(
                path,
                n.as_i64().unwrap_or(0),
                NONNEGATIVE,
            )]
        }
        _ => Vec::new(),
    }
}

fn int_or_percent_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.strip_suffix('%').and_then(|d| d.parse().ok()),
        _ => None,
    }
}

fn not_more_than_100_percent(v: &Value, path: &str) -> Errs {
    match v {
        Value::String(s) if int_or_percent_value(v).is_some_and(|n| n > 100) => {
            vec![FieldError::invalid(
                path,
                s.as_str(),
                "must not be greater than 100%",
            )]
        }
        _ => Vec::new(),
    }
}

/// maxUnavailable / maxSurge of Deployments and DaemonSets.
fn validate_rolling_update(ru: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    let mu = sub(ru, "maxUnavailable");
    let ms = sub(ru, "maxSurge");
    for (k, v) in [("maxUnavailable", mu), ("maxSurge", ms)] {
        if !v.is_null() {
            errs.extend(validate_positive_int_or_percent(v, &ch(path, k)));
        }
    }
    errs.extend(not_more_than_100_percent(mu, &ch(path, "maxUnavailable")));
    let zero = |v: &Value| int_or_percent_value(v).unwrap_or(0) == 0;
    if zero(mu) && zero(ms) {
        errs.push(FieldError::invalid(
            ch(path, "maxUnavailable"),
            mu.clone(),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    errs
}

/// Selector required and non-empty, template labels matched, template valid and
/// restarting Always: shared by every apps/v1 workload.
fn validate_workload_selector_and_template(spec: &Value, kind_word: &str) -> Errs {
    let mut errs = Vec::new();
    let sel = sub(spec, "selector");
    let template = sub(spec, "template");
    if sel.is_null() {
        errs.push(FieldError::required("spec.selector", ""));
    } else {
        errs.extend(validate_label_selector(sel, "spec.selector"));
        if selector_is_empty(sel) {
            errs.push(FieldError::invalid(
                "spec.selector",
                sel.clone(),
                format!("empty selector is invalid for {kind_word}"),
            ));
        }
    }
    let labels = sub(sub(template, "metadata"), "labels");
    let empty = Map::new();
    let label_map = labels.as_object().unwrap_or(&empty);
    if !sel.is_null() && !selector_is_empty(sel) && !selector_matches(sel, label_map) {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            labels.clone(),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(validate_pod_template(template, "spec.template"));
    let tspec = sub(template, "spec");
    if let Some(rp) = gs(tspec, "restartPolicy").filter(|rp| *rp != "Always") {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            &["Always"],
        ));
    }
    if let Some(n) = gi(tspec, "activeDeadlineSeconds") {
        let kind = match kind_word {
            "deployment" => "ReplicaSet",
            "daemonset" => "DaemonSet",
            _ => "StatefulSet",
        };
        errs.push(FieldError::invalid(
            "spec.template.spec.activeDeadlineSeconds",
            n,
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
    errs
}

fn validate_deployment(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    nonneg(&mut errs, spec, "replicas", "spec");
    errs.extend(validate_workload_selector_and_template(spec, "deployment"));
    let strategy = sub(spec, "strategy");
    match gss(strategy, "type") {
        "Recreate" => {
            if present(strategy, "rollingUpdate") {
                errs.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => errs.extend(validate_rolling_update(ru, "spec.strategy.rollingUpdate")),
        },
        _ => errs.push(FieldError::not_supported(
            "spec.strategy",
            strategy.clone(),
            &["Recreate", "RollingUpdate"],
        )),
    }
    nonneg(&mut errs, spec, "minReadySeconds", "spec");
    nonneg(&mut errs, spec, "revisionHistoryLimit", "spec");
    if let Some(p) = gi(spec, "progressDeadlineSeconds") {
        if p < 0 {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                p,
                NONNEGATIVE,
            ));
        } else if p <= gi(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                p,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

fn validate_replica_set(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    nonneg(&mut errs, spec, "replicas", "spec");
    nonneg(&mut errs, spec, "minReadySeconds", "spec");
    errs.extend(validate_workload_selector_and_template(spec, "deployment"));
    errs
}

fn validate_daemon_set(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = validate_workload_selector_and_template(spec, "daemonset");
    nonneg(&mut errs, spec, "minReadySeconds", "spec");
    nonneg(&mut errs, spec, "templateGeneration", "spec");
    nonneg(&mut errs, spec, "revisionHistoryLimit", "spec");
    let us = sub(spec, "updateStrategy");
    match gss(us, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match us.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(
                "spec.updateStrategy.rollingUpdate",
                "",
            )),
            Some(ru) => errs.extend(validate_rolling_update(
                ru,
                "spec.updateStrategy.rollingUpdate",
            )),
        },
        other => errs.push(FieldError::not_supported(
            "spec.updateStrategy",
            other,
            &["OnDelete", "RollingUpdate"],
        )),
    }
    errs
}

const STS_UPDATABLE: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

fn validate_stateful_set(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    match gss(spec, "podManagementPolicy") {
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let us = sub(spec, "updateStrategy");
    match gss(us, "type") {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if present(us, "rollingUpdate") {
                errs.push(FieldError::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    us["rollingUpdate"].clone(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            nonneg(
                &mut errs,
                sub(us, "rollingUpdate"),
                "partition",
                "spec.updateStrategy.rollingUpdate",
            );
        }
        _ => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            us.clone(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    let retention = sub(spec, "persistentVolumeClaimRetentionPolicy");
    for k in ["whenDeleted", "whenScaled"] {
        enum_field(
            &mut errs,
            retention,
            k,
            "spec.persistentVolumeClaimRetentionPolicy",
            &["Retain", "Delete"],
            false,
        );
    }
    nonneg(&mut errs, sub(spec, "ordinals"), "start", "spec.ordinals");
    nonneg(&mut errs, spec, "replicas", "spec");
    nonneg(&mut errs, spec, "minReadySeconds", "spec");
    nonneg(&mut errs, spec, "revisionHistoryLimit", "spec");
    let svc = gss(spec, "serviceName");
    if !svc.is_empty() {
        errs.extend(invalid_each("spec.serviceName", svc, is_dns1123_label(svc)));
    }
    for (i, t) in garr(spec, "volumeClaimTemplates").iter().enumerate() {
        let p = ix("spec.volumeClaimTemplates", i);
        let name = gss(sub(t, "metadata"), "name");
        if name.is_empty() {
            errs.push(FieldError::required(ch(&ch(&p, "metadata"), "name"), ""));
        }
        errs.extend(validate_pvc_spec(sub(t, "spec"), &ch(&p, "spec")));
    }
    // Containers may mount the claims the templates make: validate the pod
    // template with them as volumes (the union Kubernetes means to check).
    let mut with_claims = spec.clone();
    if let Some(vols) = with_claims
        .pointer_mut("/template/spec")
        .and_then(Value::as_object_mut)
        .map(|s| s.entry("volumes").or_insert_with(|| json!([])))
        .and_then(Value::as_array_mut)
    {
        for t in garr(spec, "volumeClaimTemplates") {
            let name = gss(sub(t, "metadata"), "name");
            if !name.is_empty() && !vols.iter().any(|v| gss(v, "name") == name) {
                vols.push(json!({"name": name, "persistentVolumeClaim": {"claimName": name}}));
            }
        }
    }
    errs.extend(validate_workload_selector_and_template(
        &with_claims,
        "statefulset",
    ));
    errs
}

fn validate_stateful_set_update(obj: &Value, old: &Value) -> Errs {
    let mut new_spec = sub(obj, "spec").clone();
    let old_spec = sub(old, "spec");
    if let Some(m) = new_spec.as_object_mut() {
        for k in [
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ] {
            match old_spec.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    if same_ignoring_empty(&new_spec, old_spec) {
        Vec::new()
    } else {
        vec![FieldError::forbidden("spec", STS_UPDATABLE)]
    }
}

fn validate_controller_revision(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    if !present(obj, "data") {
        errs.push(FieldError::required("data", "data is mandatory"));
    }
    nonneg(&mut errs, obj, "revision", "");
    errs
}

// ---------------------------------------------------------------------------
// batch/v1
// ---------------------------------------------------------------------------

fn validate_job_spec(spec: &Value, path: &str) -> Errs {
    let mut errs = Vec::new();
    for k in [
        "activeDeadlineSeconds",
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonneg(&mut errs, spec, k, path);
    }
    match gss(spec, "completionMode") {
        "" | "NonIndexed" => {}
        "Indexed" => {
            if !present(spec, "completions") {
                errs.push(FieldError::required(
                    ch(path, "completions"),
                    "when completion mode is Indexed",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            ch(path, "completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    let template = sub(spec, "template");
    let tpath = ch(path, "template");
    errs.extend(validate_pod_template(template, &tpath));
    match gs(sub(template, "spec"), "restartPolicy") {
        Some("OnFailure") | Some("Never") | None => {}
        Some(other) => errs.push(FieldError::not_supported(
            ch(&ch(&tpath, "spec"), "restartPolicy"),
            other,
            &["OnFailure", "Never"],
        )),
    }
    errs
}

fn validate_job(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    let sel = sub(spec, "selector");
    if sel.is_null() {
        errs.push(FieldError::required("spec.selector", ""));
    } else {
        errs.extend(validate_label_selector(sel, "spec.selector"));
        let labels = sub(sub(sub(spec, "template"), "metadata"), "labels");
        let empty = Map::new();
        if !selector_matches(sel, labels.as_object().unwrap_or(&empty)) {
            errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                labels.clone(),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs.extend(validate_job_spec(spec, "spec"));
    errs
}

fn validate_job_update(obj: &Value, old: &Value) -> Errs {
    let mut errs = Vec::new();
    let (n, o) = (sub(obj, "spec"), sub(old, "spec"));
    for k in ["selector", "template", "completionMode", "podFailurePolicy"] {
        let (nv, ov) = (sub(n, k), sub(o, k));
        if !same_ignoring_empty(nv, ov) {
            errs.push(FieldError::invalid(
                ch("spec", k),
                nv.clone(),
                FIELD_IMMUTABLE,
            ));
        }
    }
    // Completions may only change together with parallelism for elastic Indexed jobs.
    let elastic =
        gs(n, "completionMode") == Some("Indexed") && gi(n, "completions") == gi(n, "parallelism");
    if !elastic {
        immutable(
            &mut errs,
            sub(n, "completions"),
            sub(o, "completions"),
            "spec.completions",
        );
    }
    errs
}

fn validate_cron_job(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    let name = gss(sub(obj, "metadata"), "name");
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be no more than 52 characters",
        ));
    }
    let schedule = gss(spec, "schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else if schedule.contains("TZ") {
        errs.push(FieldError::invalid(
            "spec.schedule",
            schedule,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    } else if let Err(e) = parse_cron(schedule) {
        errs.push(FieldError::invalid("spec.schedule", schedule, e));
    }
    enum_field(
        &mut errs,
        spec,
        "concurrencyPolicy",
        "spec",
        &["Allow", "Forbid", "Replace"],
        true,
    );
    for k in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        nonneg(&mut errs, spec, k, "spec");
    }
    let jt = sub(sub(spec, "jobTemplate"), "spec");
    let jpath = "spec.jobTemplate.spec";
    if present(jt, "selector") {
        errs.push(FieldError::invalid(
            ch(jpath, "selector"),
            jt["selector"].clone(),
            "`selector` will be auto-generated",
        ));
    }
    if gb(jt, "manualSelector") {
        errs.push(FieldError::not_supported(
            ch(jpath, "manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    errs.extend(validate_job_spec(jt, jpath));
    errs
}

/// Checks a cron schedule as the CronJob controller's parser (robfig/cron, standard
/// five fields plus `@` descriptors) would, with its error messages.
pub fn parse_cron(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    if let Some(d) = spec.strip_prefix('@') {
        if let Some(every) = d.strip_prefix("every ") {
            return if parse_go_duration(every.trim()) {
                Ok(())
            } else {
                Err(format!(
                    "failed to parse duration {spec}: time: invalid duration \"{}\"",
                    every.trim()
                ))
            };
        }
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(i64, i64, &[&str], i64); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, MONTHS, 1),
        (0, 6, DAYS, 0),
    ];
    for (field, (min, max, names, offset)) in fields.iter().zip(bounds) {
        for expr in field.split(',') {
            cron_range(expr, min, max, names, offset)?;
        }
    }
    Ok(())
}

fn cron_range(expr: &str, min: i64, max: i64, names: &[&str], offset: i64) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let parse = |s: &str| -> Result<i64, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as i64 + offset);
        }
        let n: i64 = s.parse().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })?;
        if n < 0 {
            return Err(format!("negative number ({n}) not allowed: {s}"));
        }
        Ok(n)
    };
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (min, max)
    } else {
        let start = parse(low_high[0])?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, parse(low_high[1])?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            if low_high.len() == 1 && low_high[0] != "*" && low_high[0] != "?" {
                end = max;
            }
            parse(range_and_step[1])?
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// Whether `s` is a Go duration such as `1h30m` or `90s`.
fn parse_go_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    if rest == "0" {
        return true;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .filter(|u| rest.starts_with(u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

// ---------------------------------------------------------------------------
// Services and endpoints
// ---------------------------------------------------------------------------

const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);

fn cluster_ips(spec: &Value) -> Vec<String> {
    let list: Vec<String> = garr(spec, "clusterIPs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if !list.is_empty() {
        return list;
    }
    match gs(spec, "clusterIP") {
        Some(ip) if !ip.is_empty() => vec![ip.to_string()],
        _ => Vec::new(),
    }
}

fn validate_service(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    let ty = gs(spec, "type").unwrap_or("ClusterIP");
    let ips = cluster_ips(spec);
    let headless = ips.first().map(String::as_str) == Some("None");
    let ports = garr(spec, "ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    match ty {
        "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        "ExternalName" => {
            if !ips.is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            let name = gss(spec, "externalName");
            let clean = name.strip_suffix('.').unwrap_or(name);
            if clean.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                errs.extend(invalid_each(
                    "spec.externalName",
                    clean,
                    is_dns1123_subdomain(clean),
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            "spec.type",
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if let (Some(ip), Some(first)) = (gs(spec, "clusterIP"), ips.first())
        && !ip.is_empty()
        && ip != first
    {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            json!(ips),
            "first value must match `clusterIP`",
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        let p = ix("spec.clusterIPs", i);
        if ip == "None" {
            if i > 0 {
                errs.push(FieldError::invalid(
                    &p,
                    ip.as_str(),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            } else if ty == "NodePort" || ty == "LoadBalancer" {
                errs.push(FieldError::invalid(
                    &p,
                    ip.as_str(),
                    "may not be set to 'None' for LoadBalancer or NodePort services",
                ));
            }
        } else if ty != "ExternalName" && !is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                &p,
                ip.as_str(),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    let mut names = HashSet::new();
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ix("spec.ports", i);
        let name = gss(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(ch(&p, "name"), ""));
        } else if !name.is_empty() {
            errs.extend(invalid_each(&ch(&p, "name"), name, is_dns1123_label(name)));
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(ch(&p, "name"), name));
            }
        }
        let num = gi(port, "port").unwrap_or(0);
        errs.extend(
            is_valid_port_num(num)
                .into_iter()
                .map(|m| FieldError::invalid(ch(&p, "port"), num, m)),
        );
        enum_field(&mut errs, port, "protocol", &p, PROTOCOLS, true);
        if let Some(tp) = port.get("targetPort").filter(|v| !v.is_null()) {
            errs.extend(validate_port_num_or_name(tp, &ch(&p, "targetPort")));
        }
        if let Some(np) = gi(port, "nodePort").filter(|n| *n != 0) {
            if ty == "ClusterIP" || ty == "ExternalName" {
                errs.push(FieldError::forbidden(
                    ch(&p, "nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else if !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&np) {
                errs.push(FieldError::invalid(
                    ch(&p, "nodePort"),
                    np,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                    ),
                ));
            } else if !node_ports.insert((np, gss(port, "protocol").to_string())) {
                errs.push(FieldError::duplicate(ch(&p, "nodePort"), np));
            }
        }
    }
    errs.extend(validate_labels(&str_map(spec, "selector"), "spec.selector"));
    enum_field(
        &mut errs,
        spec,
        "sessionAffinity",
        "spec",
        &["ClientIP", "None"],
        ty != "ExternalName",
    );
    if let Some(etp) = gs(spec, "externalTrafficPolicy").filter(|s| !s.is_empty()) {
        if ty != "NodePort" && ty != "LoadBalancer" {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            ));
        } else {
            enum_field(
                &mut errs,
                spec,
                "externalTrafficPolicy",
                "spec",
                &["Cluster", "Local"],
                false,
            );
        }
    }
    enum_field(
        &mut errs,
        spec,
        "internalTrafficPolicy",
        "spec",
        &["Cluster", "Local"],
        false,
    );
    for (i, f) in garr(spec, "ipFamilies").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        if f != "IPv4" && f != "IPv6" {
            errs.push(FieldError::not_supported(
                ix("spec.ipFamilies", i),
                f,
                &["IPv4", "IPv6"],
            ));
        }
    }
    errs
}

fn validate_service_update(obj: &Value, old: &Value) -> Errs {
    let (n, o) = (sub(obj, "spec"), sub(old, "spec"));
    let mut errs = Vec::new();
    let was_external = gs(o, "type") == Some("ExternalName");
    let is_external = gs(n, "type") == Some("ExternalName");
    let old_ips = cluster_ips(o);
    let new_ips = cluster_ips(n);
    if !was_external && !is_external && !old_ips.is_empty() && new_ips.first() != old_ips.first() {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            json!(new_ips),
            "may not change once set",
        ));
    }
    errs
}

fn validate_endpoint_ip(ip: &str, path: &str) -> Errs {
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return vec![FieldError::invalid(
            path,
            ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )];
    };
    let mut errs = Vec::new();
    if addr.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be unspecified (0.0.0.0)",
        ));
    }
    if addr.is_loopback() {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local = match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        errs.push(FieldError::invalid(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    errs
}

fn validate_endpoint_ports(ports: &[Value], path: &str, names_required: bool) -> Errs {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = ix(path, i);
        let name = gss(port, "name");
        if names_required && name.is_empty() {
            errs.push(FieldError::required(ch(&p, "name"), ""));
        } else if !name.is_empty() {
            errs.extend(invalid_each(&ch(&p, "name"), name, is_dns1123_label(name)));
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(ch(&p, "name"), name));
            }
        }
        if let Some(n) = gi(port, "port") {
            errs.extend(
                is_valid_port_num(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(ch(&p, "port"), n, m)),
            );
        }
        enum_field(&mut errs, port, "protocol", &p, PROTOCOLS, false);
    }
    errs
}

fn validate_endpoints(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    for (i, s) in garr(obj, "subsets").iter().enumerate() {
        let p = ix("subsets", i);
        if garr(s, "addresses").is_empty() && garr(s, "notReadyAddresses").is_empty() {
            errs.push(FieldError::required(
                &p,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in garr(s, list).iter().enumerate() {
                let ap = ix(&ch(&p, list), j);
                errs.extend(validate_endpoint_ip(gss(a, "ip"), &ch(&ap, "ip")));
                let host = gss(a, "hostname");
                if !host.is_empty() {
                    errs.extend(invalid_each(
                        &ch(&ap, "hostname"),
                        host,
                        is_dns1123_label(host),
                    ));
                }
                let node = gss(a, "nodeName");
                if !node.is_empty() {
                    errs.extend(invalid_each(
                        &ch(&ap, "nodeName"),
                        node,
                        is_dns1123_subdomain(node),
                    ));
                }
            }
        }
        let ports = garr(s, "ports");
        errs.extend(validate_endpoint_ports(
            ports,
            &ch(&p, "ports"),
            ports.len() > 1,
        ));
    }
    errs
}

fn validate_endpoint_slice(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    let at = gss(obj, "addressType");
    match at {
        "" => errs.push(FieldError::required("addressType", "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => errs.push(FieldError::not_supported(
            "addressType",
            other,
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    for (i, ep) in garr(obj, "endpoints").iter().enumerate() {
        let p = ix("endpoints", i);
        let addrs = garr(ep, "addresses");
        if addrs.is_empty() {
            errs.push(FieldError::required(
                ch(&p, "addresses"),
                "must contain at least 1 address",
            ));
        } else if addrs.len() > 100 {
            errs.push(FieldError {
                kind: crate::field::ErrorType::TooMany,
                field: ch(&p, "addresses"),
                value: None,
                detail: "must have at most 100 items".into(),
            });
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let ap = ix(&ch(&p, "addresses"), j);
            match at {
                "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => {
                    errs.push(FieldError::invalid(&ap, a, "must be a valid IPv4 address"));
                }
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    errs.push(FieldError::invalid(&ap, a, "must be a valid IPv6 address"));
                }
                "FQDN" => errs.extend(invalid_each(&ap, a, is_dns1123_subdomain(a))),
                _ => {}
            }
        }
        let host = gss(ep, "hostname");
        if !host.is_empty() {
            errs.extend(invalid_each(
                &ch(&p, "hostname"),
                host,
                is_dns1123_label(host),
            ));
        }
    }
    errs.extend(validate_endpoint_ports(garr(obj, "ports"), "ports", false));
    errs
}

// ---------------------------------------------------------------------------
// ConfigMaps, Secrets, ServiceAccounts
// ---------------------------------------------------------------------------

fn base64_decoded_len(s: &str) -> usize {
    s.trim_end_matches('=').len() * 3 / 4
}

fn validate_config_map(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    let mut total = 0;
    let binary = gobj(obj, "binaryData");
    for (k, v) in str_map(obj, "data") {
        let p = key("data", &k);
        errs.extend(invalid_each(&p, &k, is_config_map_key(&k)));
        if binary.is_some_and(|b| b.contains_key(&k)) {
            errs.push(FieldError::invalid(
                &p,
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += v.len();
    }
    for (k, v) in str_map(obj, "binaryData") {
        errs.extend(invalid_each(
            &key("binaryData", &k),
            &k,
            is_config_map_key(&k),
        ));
        total += base64_decoded_len(&v);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    errs
}

fn validate_secret(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    let mut total = 0;
    let data = str_map(obj, "data");
    for (k, v) in &data {
        errs.extend(invalid_each(&key("data", k), k, is_config_map_key(k)));
        total += base64_decoded_len(v);
    }
    let has = |k: &str| data.iter().any(|(dk, _)| dk == k);
    let annotations = str_map(sub(obj, "metadata"), "annotations");
    match gss(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let a = "kubernetes.io/service-account.name";
            if !annotations.iter().any(|(k, v)| k == a && !v.is_empty()) {
                errs.push(FieldError::required(key("metadata.annotations", a), ""));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => {
            errs.push(FieldError::required("data[.dockercfg]", ""));
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""));
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            errs.push(FieldError::required("data[ssh-privatekey]", ""));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.key", "tls.crt"] {
                if !has(k) {
                    errs.push(FieldError::required(key("data", k), ""));
                }
            }
        }
        _ => {}
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    errs
}

/// `immutable: true` ConfigMaps and Secrets keep their data and stay immutable.
fn validate_immutable_data(obj: &Value, old: &Value, fields: &[&str]) -> Errs {
    let mut errs = Vec::new();
    if gb(old, "immutable") {
        if !gb(obj, "immutable") {
            errs.push(FieldError::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        for f in fields {
            if !same_ignoring_empty(sub(obj, f), sub(old, f)) {
                errs.push(FieldError::forbidden(
                    *f,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    errs
}

// ---------------------------------------------------------------------------
// Nodes, namespaces
// ---------------------------------------------------------------------------

fn validate_node(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    let cidr = gss(spec, "podCIDR");
    if !cidr.is_empty() && !is_valid_cidr(cidr) {
        errs.push(FieldError::invalid(
            "spec.podCIDR",
            cidr,
            "must be a valid CIDR",
        ));
    }
    for (i, c) in garr(spec, "podCIDRs").iter().enumerate() {
        let c = c.as_str().unwrap_or("");
        if !is_valid_cidr(c) {
            errs.push(FieldError::invalid(
                ix("spec.podCIDRs", i),
                c,
                "must be a valid CIDR",
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, t) in garr(spec, "taints").iter().enumerate() {
        let p = ix("spec.taints", i);
        let k = gss(t, "key");
        errs.extend(invalid_each(&ch(&p, "key"), k, is_qualified_name(k)));
        let v = gss(t, "value");
        errs.extend(invalid_each(&ch(&p, "value"), v, is_valid_label_value(v)));
        enum_field(&mut errs, t, "effect", &p, TAINT_EFFECTS, true);
        let effect = gss(t, "effect");
        if !seen.insert((k.to_string(), effect.to_string())) {
            errs.push(FieldError::duplicate(
                &p,
                format!("taints must be unique by key and effect pair: {k}:{effect}"),
            ));
        }
    }
    errs
}

fn validate_node_update(obj: &Value, old: &Value) -> Errs {
    let (n, o) = (sub(obj, "spec"), sub(old, "spec"));
    let mut errs = Vec::new();
    let old_cidrs = garr(o, "podCIDRs");
    if (!old_cidrs.is_empty() && garr(n, "podCIDRs") != old_cidrs)
        || (!gss(o, "podCIDR").is_empty() && gss(n, "podCIDR") != gss(o, "podCIDR"))
    {
        errs.push(FieldError::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    let old_pid = gss(o, "providerID");
    if !old_pid.is_empty() && gss(n, "providerID") != old_pid {
        errs.push(FieldError::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs
}

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn validate_access_modes(spec: &Value, path: &str, required_detail: &str) -> Errs {
    let mut errs = Vec::new();
    let modes = garr(spec, "accessModes");
    let p = ch(path, "accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required(&p, required_detail));
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(&p, m, ACCESS_MODES));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m.as_str() == Some("ReadWriteOncePod")) {
        errs.push(FieldError::forbidden(
            &p,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    errs
}

fn validate_pvc_spec(spec: &Value, path: &str) -> Errs {
    let mut errs = validate_access_modes(spec, path, "at least 1 access mode is required");
    let sel = sub(spec, "selector");
    errs.extend(validate_label_selector(sel, &ch(path, "selector")));
    let storage_path = key(&ch(path, "resources"), "storage");
    match sub(sub(sub(spec, "resources"), "requests"), "storage") {
        Value::Null => errs.push(FieldError::required(&storage_path, "")),
        v => match quantity_text(v).map(|t| (parse_quantity(&t), t)) {
            Some((Ok(q), t)) if q.nanos <= 0 => errs.push(FieldError::invalid(
                &storage_path,
                t,
                "must be greater than zero",
            )),
            Some((Err(e), t)) => errs.push(FieldError::invalid(&storage_path, t, e)),
            _ => {}
        },
    }
    enum_field(
        &mut errs,
        spec,
        "volumeMode",
        path,
        &["Block", "Filesystem"],
        false,
    );
    let sc = gss(spec, "storageClassName");
    if !sc.is_empty() {
        errs.extend(invalid_each(
            &ch(path, "storageClassName"),
            sc,
            is_dns1123_subdomain(sc),
        ));
    }
    errs
}

fn validate_pvc_update(obj: &Value, old: &Value) -> Errs {
    let (n, o) = (sub(obj, "spec"), sub(old, "spec"));
    let mut errs = Vec::new();
    let mut old_clone = o.clone();
    let mut new_clone = n.clone();
    if gss(o, "volumeName").is_empty()
        && let Some(m) = old_clone.as_object_mut()
    {
        match n.get("volumeName") {
            Some(v) => m.insert("volumeName".into(), v.clone()),
            None => m.remove("volumeName"),
        };
    }
    // A claim made with no class may get one later, once (Kubernetes'
    // retroactive default StorageClass assignment).
    if o.get("storageClassName").is_none_or(Value::is_null)
        && let Some(m) = old_clone.as_object_mut()
        && let Some(v) = n.get("storageClassName")
    {
        m.insert("storageClassName".into(), v.clone());
    }
    for c in [&mut old_clone, &mut new_clone] {
        if let Some(m) = c.as_object_mut() {
            m.remove("resources");
            m.remove("volumeAttributesClassName");
        }
    }
    let old_res = sub(o, "resources");
    let new_res = sub(n, "resources");
    let strip_storage = |r: &Value| {
        let mut r = r.clone();
        if let Some(req) = r.get_mut("requests").and_then(Value::as_object_mut) {
            req.remove("storage");
        }
        r
    };
    let bound = gs(sub(obj, "status"), "phase") == Some("Bound");
    let resources_ok = if bound {
        same_ignoring_empty(&strip_storage(new_res), &strip_storage(old_res))
    } else {
        same_ignoring_empty(new_res, old_res)
    };
    if !same_ignoring_empty(&new_clone, &old_clone) || !resources_ok {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    let size = |r: &Value| {
        quantity_text(sub(sub(r, "requests"), "storage")).and_then(|t| parse_quantity(&t).ok())
    };
    if let (Some(ns), Some(os)) = (size(new_res), size(old_res))
        && ns < os
    {
        errs.push(FieldError::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than previous value",
        ));
    }
    errs
}

const PV_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
    "iscsi",
];

fn validate_pv(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = validate_access_modes(spec, "spec", "");
    match gobj(spec, "capacity") {
        None => errs.push(FieldError::required("spec.capacity", "")),
        Some(m) if m.is_empty() => errs.push(FieldError::required("spec.capacity", "")),
        Some(m) => {
            if !m.contains_key("storage") || m.len() > 1 {
                errs.push(FieldError::not_supported(
                    "spec.capacity",
                    Value::Object(m.clone()),
                    &["storage"],
                ));
            }
            for (k, v) in m {
                let p = key("spec.capacity", k);
                match quantity_text(v).map(|t| (parse_quantity(&t), t)) {
                    Some((Ok(q), t)) if q.is_negative() => errs.push(FieldError::invalid(
                        &p,
                        t,
                        "must be a valid resource quantity",
                    )),
                    Some((Err(e), t)) => errs.push(FieldError::invalid(&p, t, e)),
                    _ => {}
                }
            }
        }
    }
    enum_field(
        &mut errs,
        spec,
        "persistentVolumeReclaimPolicy",
        "spec",
        &["Delete", "Recycle", "Retain"],
        false,
    );
    let mut found = false;
    for &src in PV_SOURCES {
        if !present(spec, src) {
            continue;
        }
        if found {
            errs.push(FieldError::forbidden(
                ch("spec", src),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        found = true;
        let s = sub(spec, src);
        match src {
            "hostPath" | "local" | "nfs" => {
                if gss(s, "path").is_empty() {
                    errs.push(FieldError::required(ch(&ch("spec", src), "path"), ""));
                }
                if src == "local" && !present(spec, "nodeAffinity") {
                    errs.push(FieldError::required(
                        "spec.nodeAffinity",
                        "Local volume requires node affinity",
                    ));
                }
                if src == "nfs" && gss(s, "server").is_empty() {
                    errs.push(FieldError::required("spec.nfs.server", ""));
                }
            }
            "csi" => {
                if gss(s, "driver").is_empty() {
                    errs.push(FieldError::required("spec.csi.driver", ""));
                }
                if gss(s, "volumeHandle").is_empty() {
                    errs.push(FieldError::required("spec.csi.volumeHandle", ""));
                }
            }
            _ => {}
        }
    }
    if !found {
        errs.push(FieldError::required("spec", "must specify a volume type"));
    }
    enum_field(
        &mut errs,
        spec,
        "volumeMode",
        "spec",
        &["Block", "Filesystem"],
        false,
    );
    let sc = gss(spec, "storageClassName");
    if !sc.is_empty() {
        errs.extend(invalid_each(
            "spec.storageClassName",
            sc,
            is_dns1123_subdomain(sc),
        ));
    }
    errs
}

fn validate_pv_update(obj: &Value, old: &Value) -> Errs {
    let (n, o) = (sub(obj, "spec"), sub(old, "spec"));
    let mut errs = Vec::new();
    if PV_SOURCES
        .iter()
        .any(|s| !same_ignoring_empty(sub(n, s), sub(o, s)))
    {
        errs.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    immutable(
        &mut errs,
        sub(n, "volumeMode"),
        sub(o, "volumeMode"),
        "spec.volumeMode",
    );
    if present(o, "nodeAffinity")
        && !same_ignoring_empty(sub(n, "nodeAffinity"), sub(o, "nodeAffinity"))
    {
        errs.push(FieldError::invalid(
            "spec.nodeAffinity",
            n["nodeAffinity"].clone(),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

fn validate_storage_class(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    let prov = gss(obj, "provisioner");
    if prov.is_empty() {
        errs.push(FieldError::required("provisioner", ""));
    } else {
        if prov.len() > 63 {
            errs.push(FieldError::too_long("provisioner", 63));
        }
        errs.extend(invalid_each(
            "provisioner",
            prov,
            is_qualified_name(&prov.to_lowercase()),
        ));
    }
    let params = str_map(obj, "parameters");
    let mut total = 0;
    for (k, v) in &params {
        if k.is_empty() {
            errs.push(FieldError::invalid(
                "parameters",
                k.as_str(),
                "key must not be empty",
            ));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(
            "parameters",
            TOTAL_ANNOTATION_SIZE_LIMIT,
        ));
    }
    enum_field(
        &mut errs,
        obj,
        "reclaimPolicy",
        "",
        &["Delete", "Retain"],
        false,
    );
    enum_field(
        &mut errs,
        obj,
        "volumeBindingMode",
        "",
        &["Immediate", "WaitForFirstConsumer"],
        false,
    );
    errs
}

fn validate_storage_class_update(obj: &Value, old: &Value) -> Errs {
    let mut errs = Vec::new();
    for (k, msg) in [
        ("parameters", "updates to parameters are forbidden."),
        ("provisioner", "updates to provisioner are forbidden."),
        ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
    ] {
        if !same_ignoring_empty(sub(obj, k), sub(old, k)) {
            errs.push(FieldError::forbidden(k, msg));
        }
    }
    immutable(
        &mut errs,
        sub(obj, "volumeBindingMode"),
        sub(old, "volumeBindingMode"),
        "volumeBindingMode",
    );
    errs
}

// ---------------------------------------------------------------------------
// Autoscaling, scheduling, coordination, policy, events
// ---------------------------------------------------------------------------

fn validate_hpa(obj: &Value, v1: bool) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    let target = sub(spec, "scaleTargetRef");
    for k in ["kind", "name"] {
        let v = gss(target, k);
        let p = ch("spec.scaleTargetRef", k);
        if v.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else {
            errs.extend(invalid_each(&p, v, is_path_segment_name(v)));
        }
    }
    let min = gi(spec, "minReplicas");
    if let Some(m) = min.filter(|m| *m < 1) {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            m,
            "must be greater than or equal to 1",
        ));
    }
    let max = gi(spec, "maxReplicas").unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    if v1 {
        if let Some(t) = gi(spec, "targetCPUUtilizationPercentage").filter(|t| *t < 1) {
            errs.push(FieldError::invalid(
                "spec.targetCPUUtilizationPercentage",
                t,
                "must be greater than 0",
            ));
        }
        return errs;
    }
    for (i, m) in garr(spec, "metrics").iter().enumerate() {
        let p = ix("spec.metrics", i);
        let ty = gss(m, "type");
        let field = match ty {
            "" => {
                errs.push(FieldError::required(
                    ch(&p, "type"),
                    "must specify a metric source type",
                ));
                continue;
            }
            "Object" => "object",
            "Pods" => "pods",
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "External" => "external",
            other => {
                errs.push(FieldError::not_supported(
                    ch(&p, "type"),
                    other,
                    &[
                        "ContainerResource",
                        "External",
                        "Object",
                        "Pods",
                        "Resource",
                    ],
                ));
                continue;
            }
        };
        let src = sub(m, field);
        let sp = ch(&p, field);
        if src.is_null() {
            errs.push(FieldError::required(
                &sp,
                format!("must populate information for the given metric source (only allowed when type is {ty})"),
            ));
            continue;
        }
        if matches!(field, "resource" | "containerResource") && gss(src, "name").is_empty() {
            errs.push(FieldError::required(
                ch(&sp, "name"),
                "must specify a resource name",
            ));
        }
        if matches!(field, "pods" | "object" | "external")
            && gss(sub(src, "metric"), "name").is_empty()
        {
            errs.push(FieldError::required(
                ch(&ch(&sp, "metric"), "name"),
                "must specify a metric name",
            ));
        }
        let t = sub(src, "target");
        let tp = ch(&sp, "target");
        match gss(t, "type") {
            "" => errs.push(FieldError::required(
                ch(&tp, "type"),
                "must specify a metric target type",
            )),
            "Utilization" | "Value" | "AverageValue" => {}
            other => errs.push(FieldError::not_supported(
                ch(&tp, "type"),
                other,
                &["AverageValue", "Utilization", "Value"],
            )),
        }
        if let Some(u) = gi(t, "averageUtilization").filter(|u| *u <= 0) {
            errs.push(FieldError::invalid(
                ch(&tp, "averageUtilization"),
                u,
                "must be greater than 0",
            ));
        }
        for k in ["value", "averageValue"] {
            if let Some(q) = t.get(k).and_then(quantity_text)
                && parse_quantity(&q).is_ok_and(|v| v.nanos <= 0)
            {
                errs.push(FieldError::invalid(ch(&tp, k), q, "must be positive"));
            }
        }
    }
    errs
}

const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

fn validate_priority_class(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    let name = gss(sub(obj, "metadata"), "name");
    let value = gi(obj, "value").unwrap_or(0);
    match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
        Some((_, v)) => {
            if value != *v {
                errs.push(FieldError::forbidden(
                    "metadata.name",
                    format!("value of {name} PriorityClass must be {v}"),
                ));
            }
        }
        None => {
            if name.starts_with("system-") {
                errs.push(FieldError::forbidden(
                    "metadata.name",
                    "priority class names with 'system-' prefix are reserved",
                ));
            }
            if value > HIGHEST_USER_PRIORITY {
                errs.push(FieldError::forbidden(
                    "value",
                    format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
                ));
            }
        }
    }
    enum_field(
        &mut errs,
        obj,
        "preemptionPolicy",
        "",
        &["Never", "PreemptLowerPriority"],
        false,
    );
    errs
}

fn validate_priority_class_update(obj: &Value, old: &Value) -> Errs {
    let mut errs = Vec::new();
    if sub(obj, "value") != sub(old, "value") {
        errs.push(FieldError::forbidden(
            "value",
            "may not be changed in an update.",
        ));
    }
    immutable(
        &mut errs,
        sub(obj, "preemptionPolicy"),
        sub(old, "preemptionPolicy"),
        "preemptionPolicy",
    );
    errs
}

fn validate_lease(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    if let Some(n) = gi(spec, "leaseDurationSeconds").filter(|n| *n <= 0) {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            n,
            "must be greater than 0",
        ));
    }
    nonneg(&mut errs, spec, "leaseTransitions", "spec");
    errs
}

fn validate_pdb(obj: &Value) -> Errs {
    let spec = sub(obj, "spec");
    let mut errs = Vec::new();
    if present(spec, "minAvailable") && present(spec, "maxUnavailable") {
        errs.push(FieldError::invalid(
            "spec",
            spec.clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for k in ["minAvailable", "maxUnavailable"] {
        if let Some(v) = spec.get(k).filter(|v| !v.is_null()) {
            let p = ch("spec", k);
            errs.extend(validate_positive_int_or_percent(v, &p));
            errs.extend(not_more_than_100_percent(v, &p));
        }
    }
    errs.extend(validate_label_selector(
        sub(spec, "selector"),
        "spec.selector",
    ));
    enum_field(
        &mut errs,
        spec,
        "unhealthyPodEvictionPolicy",
        "spec",
        &["AlwaysAllow", "IfHealthyBudget"],
        false,
    );
    errs
}

fn validate_event(obj: &Value, events_api: bool) -> Errs {
    let mut errs = Vec::new();
    let ns = gss(sub(obj, "metadata"), "namespace");
    let involved = sub(
        obj,
        if events_api {
            "regarding"
        } else {
            "involvedObject"
        },
    );
    let ins = gss(involved, "namespace");
    let mismatch = if ins.is_empty() {
        !ns.is_empty() && ns != "default"
    } else {
        ns != ins
    };
    if mismatch {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            ins,
            "does not match event.namespace",
        ));
    }
    if events_api {
        if !present(obj, "eventTime") {
            errs.push(FieldError::required("eventTime", ""));
        }
        for k in [
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
        ] {
            if gss(obj, k).is_empty() {
                errs.push(FieldError::required(k, ""));
            }
        }
        let rc = gss(obj, "reportingController");
        if !rc.is_empty() {
            errs.extend(invalid_each(
                "reportingController",
                rc,
                is_qualified_name(rc),
            ));
        }
        if gss(obj, "note").len() > 1024 {
            errs.push(FieldError::too_long("note", 1024));
        }
    }
    match gss(obj, "type") {
        "" if !events_api => {}
        "Normal" | "Warning" => {}
        other => errs.push(FieldError::not_supported(
            "type",
            other,
            &["Normal", "Warning"],
        )),
    }
    errs
}

fn validate_service_account(obj: &Value) -> Errs {
    let mut errs = Vec::new();
    for (i, s) in garr(obj, "secrets").iter().enumerate() {
        let n = gss(s, "name");
        if !n.is_empty() {
            errs.extend(invalid_each(
                &ch(&ix("secrets", i), "name"),
                n,
                is_dns1123_subdomain(n),
            ));
        }
    }
    errs
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

fn validate_kind(r: &ResourceInfo, obj: &Value) -> Errs {
    match (r.group, r.kind) {
        ("", "Pod") => validate_pod(obj),
        ("", "Service") => validate_service(obj),
        ("", "Endpoints") => validate_endpoints(obj),
        ("", "ConfigMap") => validate_config_map(obj),
        ("", "Secret") => validate_secret(obj),
        ("", "Node") => validate_node(obj),
        ("", "PersistentVolume") => validate_pv(obj),
        ("", "PersistentVolumeClaim") => validate_pvc_spec(sub(obj, "spec"), "spec"),
        ("", "ServiceAccount") => validate_service_account(obj),
        ("", "Event") => validate_event(obj, false),
        ("events.k8s.io", "Event") => validate_event(obj, true),
        ("apps", "Deployment") => validate_deployment(obj),
        ("apps", "ReplicaSet") => validate_replica_set(obj),
        ("apps", "StatefulSet") => validate_stateful_set(obj),
        ("apps", "DaemonSet") => validate_daemon_set(obj),
        ("apps", "ControllerRevision") => validate_controller_revision(obj),
        ("batch", "Job") => validate_job(obj),
        ("batch", "CronJob") => validate_cron_job(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => validate_hpa(obj, r.version == "v1"),
        ("storage.k8s.io", "StorageClass") => validate_storage_class(obj),
        ("coordination.k8s.io", "Lease") => validate_lease(obj),
        ("discovery.k8s.io", "EndpointSlice") => validate_endpoint_slice(obj),
        ("scheduling.k8s.io", "PriorityClass") => validate_priority_class(obj),
        ("policy", "PodDisruptionBudget") => validate_pdb(obj),
        _ => Vec::new(),
    }
}

/// Validates a new object: its metadata (name format per kind, namespace presence,
/// labels, annotations, finalizers, owner references) and its kind's own rules.
pub fn validate_create(r: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, r.namespaced, name_rule(r.kind));
    errs.extend(validate_kind(r, obj));
    errs
}

/// Validates an update of `old` to `obj`: everything [`validate_create`] checks on
/// the new object, plus immutable metadata and each kind's update rules.
pub fn validate_update(r: &ResourceInfo, obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, r.namespaced, name_rule(r.kind));
    errs.extend(validate_object_meta_update(obj, old));
    errs.extend(validate_kind(r, obj));
    let spec_path = |k: &str| ch("spec", k);
    match (r.group, r.kind) {
        ("", "Pod") => errs.extend(validate_pod_update(obj, old)),
        ("", "Service") => errs.extend(validate_service_update(obj, old)),
        ("", "ConfigMap") => {
            errs.extend(validate_immutable_data(obj, old, &["data", "binaryData"]))
        }
        ("", "Secret") => {
            let (n, o) = (sub(obj, "type"), sub(old, "type"));
            if !(n == o || (gss(obj, "type").is_empty() && gss(old, "type") == "Opaque")) {
                errs.push(FieldError::invalid("type", n.clone(), FIELD_IMMUTABLE));
            }
            errs.extend(validate_immutable_data(obj, old, &["data"]));
        }
        ("", "Node") => errs.extend(validate_node_update(obj, old)),
        ("", "PersistentVolume") => errs.extend(validate_pv_update(obj, old)),
        ("", "PersistentVolumeClaim") => errs.extend(validate_pvc_update(obj, old)),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            let (n, o) = (
                sub(sub(obj, "spec"), "selector"),
                sub(sub(old, "spec"), "selector"),
            );
            if !same_ignoring_empty(n, o) {
                errs.push(FieldError::invalid(
                    spec_path("selector"),
                    n.clone(),
                    FIELD_IMMUTABLE,
                ));
            }
        }
        ("apps", "StatefulSet") => errs.extend(validate_stateful_set_update(obj, old)),
        ("apps", "ControllerRevision")
            if !same_ignoring_empty(sub(obj, "data"), sub(old, "data")) =>
        {
            errs.push(FieldError::invalid(
                "data",
                sub(obj, "data").clone(),
                FIELD_IMMUTABLE,
            ));
        }
        ("batch", "Job") => errs.extend(validate_job_update(obj, old)),
        ("storage.k8s.io", "StorageClass") => errs.extend(validate_storage_class_update(obj, old)),
        ("scheduling.k8s.io", "PriorityClass") => {
            errs.extend(validate_priority_class_update(obj, old))
        }
        ("discovery.k8s.io", "EndpointSlice") => immutable(
            &mut errs,
            sub(obj, "addressType"),
            sub(old, "addressType"),
            "addressType",
        ),
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;

    /// name, group, resource, new object, old object, expected errors.
    type UpdateCase = (
        &'static str,
        &'static str,
        &'static str,
        Value,
        Value,
        Vec<String>,
    );

    fn res(group: &str, resource: &str) -> &'static ResourceInfo {
        let version = match group {
            "" | "apps" | "batch" | "policy" => "v1",
            "autoscaling" => "v2",
            _ => "v1",
        };
        lookup(group, version, resource).expect("served resource")
    }

    fn create(group: &str, resource: &str, obj: &Value) -> Vec<String> {
        validate_create(res(group, resource), obj)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn update(group: &str, resource: &str, obj: &Value, old: &Value) -> Vec<String> {
        validate_update(res(group, resource), obj, old)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Applies JSON-pointer edits to a copy of `base`; `Value::Null` removes the field.
    fn with(base: &Value, edits: &[(&str, Value)]) -> Value {
        let mut v = base.clone();
        for (ptr, new) in edits {
            let (parent, last) = ptr.rsplit_once('/').expect("pointer");
            let target = if parent.is_empty() {
                &mut v
            } else {
                v.pointer_mut(parent).expect("parent exists")
            };
            match target {
                Value::Object(m) => {
                    if new.is_null() {
                        m.remove(last);
                    } else {
                        m.insert(last.to_string(), new.clone());
                    }
                }
                Value::Array(a) => a[last.parse::<usize>().expect("index")] = new.clone(),
                _ => panic!("cannot edit {ptr}"),
            }
        }
        v
    }

    fn container() -> Value {
        json!({"name": "app", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
               "terminationMessagePolicy": "File",
               "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
               "env": [{"name": "MODE", "value": "prod"},
                       {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
               "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                             "requests": {"cpu": "250m", "memory": "64Mi"}},
               "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                {"name": "config", "mountPath": "/etc/app"}],
               "livenessProbe": {"httpGet": {"path": "/healthz", "port": 80, "scheme": "HTTP"},
                                 "periodSeconds": 10, "timeoutSeconds": 1,
                                 "successThreshold": 1, "failureThreshold": 3},
               "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5,
                                  "successThreshold": 2, "failureThreshold": 3}})
    }

    fn pod_spec() -> Value {
        json!({"containers": [container()], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
               "terminationGracePeriodSeconds": 30, "serviceAccountName": "default",
               "volumes": [{"name": "data", "emptyDir": {}},
                           {"name": "config", "configMap": {"name": "app-config"}}],
               "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                "effect": "NoExecute", "tolerationSeconds": 300}]})
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"},
                            "resourceVersion": "5", "uid": "u1",
                            "creationTimestamp": "2024-01-01T00:00:00Z"},
               "spec": pod_spec()})
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": 3, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                        "selector": {"matchLabels": {"app": "web"}},
                        "strategy": {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                        "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                                     "spec": pod_spec()}}})
    }

    fn service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                        "selector": {"app": "web"}, "sessionAffinity": "None",
                        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                                  {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}})
    }

    fn statefulset() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "db", "namespace": "default"},
               "spec": {"replicas": 1, "serviceName": "db", "podManagementPolicy": "OrderedReady",
                        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                        "selector": {"matchLabels": {"app": "db"}},
                        "template": {"metadata": {"labels": {"app": "db"}},
                                     "spec": {"containers": [{"name": "db", "image": "postgres",
                                              "imagePullPolicy": "Always", "terminationMessagePolicy": "File",
                                              "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}],
                                              "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "1Gi"}}}}]}})
    }

    fn job() -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "pi", "namespace": "default"},
               "spec": {"backoffLimit": 6, "completions": 1, "parallelism": 1,
                        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                        "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "abc"}},
                                     "spec": {"containers": [{"name": "pi", "image": "perl",
                                              "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}],
                                              "restartPolicy": "Never", "dnsPolicy": "ClusterFirst"}}}})
    }

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

    #[test]
    fn valid_objects_have_no_errors() {
        let cases: Vec<(&str, &str, Value)> = vec![
            ("", "pods", pod()),
            ("apps", "deployments", deployment()),
            ("", "services", service()),
            ("apps", "statefulsets", statefulset()),
            ("batch", "jobs", job()),
            ("", "namespaces", json!({"metadata": {"name": "team-a"}})),
            (
                "",
                "configmaps",
                json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"app.properties": "x=1"}}),
            ),
            (
                "",
                "secrets",
                json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls",
                                  "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}}),
            ),
            (
                "batch",
                "cronjobs",
                json!({"metadata": {"name": "hello", "namespace": "d"},
                "spec": {"schedule": "*/5 * * * 1-5", "concurrencyPolicy": "Allow",
                         "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox",
                            "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}],
                            "restartPolicy": "OnFailure", "dnsPolicy": "ClusterFirst"}}}}}}),
            ),
            (
                "policy",
                "poddisruptionbudgets",
                json!({"metadata": {"name": "p", "namespace": "d"},
                "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}),
            ),
            (
                "storage.k8s.io",
                "storageclasses",
                json!({"metadata": {"name": "standard"},
                "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}),
            ),
        ];
        for (g, r, obj) in cases {
            assert_eq!(create(g, r, &obj), Vec::<String>::new(), "{r}");
        }
    }

    #[test]
    fn create_errors_have_kubernetes_paths_and_messages() {
        let p = pod();
        let d = deployment();
        let s = service();
        let cases: Vec<(&str, &str, &str, Value, Vec<String>)> = vec![
            ("pod name format", "", "pods", with(&p, &[("/metadata/name", json!("Foo_bar"))]),
             vec![format!("metadata.name: Invalid value: \"Foo_bar\": {SUBDOMAIN_MSG}")]),
            ("name required", "", "pods", with(&p, &[("/metadata/name", Value::Null)]),
             vec!["metadata.name: Required value: name or generateName is required".into()]),
            ("generateName with trailing dash is fine", "", "pods",
             with(&p, &[("/metadata/name", Value::Null), ("/metadata/generateName", json!("web-"))]), vec![]),
            ("namespace required", "", "pods", with(&p, &[("/metadata/namespace", Value::Null)]),
             vec!["metadata.namespace: Required value".into()]),
            ("cluster-scoped forbids namespace", "", "namespaces",
             json!({"metadata": {"name": "a", "namespace": "b"}}),
             vec!["metadata.namespace: Forbidden: not allowed on this type".into()]),
            ("namespace name is a label", "", "namespaces", json!({"metadata": {"name": "a.b"}}),
             vec!["metadata.name: Invalid value: \"a.b\": must not contain dots".into()]),
            ("service name is a DNS-1035 label", "", "services", with(&s, &[("/metadata/name", json!("1web"))]),
             vec!["metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into()]),
            ("label key and value", "", "pods", with(&p, &[("/metadata/labels", json!({"-bad": "ok", "good": "no way"}))]),
             vec![
                "metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into(),
                "metadata.labels: Invalid value: \"no way\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into()]),
            ("annotation size", "", "configmaps",
             json!({"metadata": {"name": "c", "namespace": "d", "annotations": {"a": "x".repeat(262_144)}}}),
             vec!["metadata.annotations: Too long: may not be more than 262144 bytes".into()]),
            ("finalizer must be qualified", "", "configmaps",
             json!({"metadata": {"name": "c", "namespace": "d", "finalizers": ["mine"]}}),
             vec!["metadata.finalizers[0]: Invalid value: \"mine\": name is neither a standard finalizer name nor is it fully qualified".into()]),
            ("owner reference uid", "", "configmaps",
             json!({"metadata": {"name": "c", "namespace": "d", "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p"}]}}),
             vec!["metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty".into()]),
            ("container name required", "", "pods", with(&p, &[("/spec/containers/0/name", json!(""))]),
             vec!["spec.containers[0].name: Required value".into()]),
            ("image required in pods", "", "pods", with(&p, &[("/spec/containers/0/image", Value::Null)]),
             vec!["spec.containers[0].image: Required value".into()]),
            ("duplicate container names across init", "", "pods",
             with(&p, &[("/spec/initContainers", json!([{"name": "app", "image": "busybox",
                "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}]))]),
             vec!["spec.containers[0].name: Duplicate value: \"app\"".into()]),
            ("container name is a label", "", "pods", with(&p, &[("/spec/containers/0/name", json!("App"))]),
             vec![format!("spec.containers[0].name: Invalid value: \"App\": {LABEL_MSG}")]),
            ("container port range and protocol", "", "pods",
             with(&p, &[("/spec/containers/0/ports", json!([{"containerPort": 70000, "protocol": "HTTP"}]))]),
             vec!["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
                  "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()]),
            ("duplicate port names", "", "pods",
             with(&p, &[("/spec/containers/0/ports", json!([{"name": "web", "containerPort": 80, "protocol": "TCP"},
                                                           {"name": "web", "containerPort": 81, "protocol": "TCP"}]))]),
             vec!["spec.containers[0].ports[1].name: Duplicate value: \"web\"".into()]),
            ("env name with =", "", "pods", with(&p, &[("/spec/containers/0/env/0/name", json!("A=B"))]),
             vec!["spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='".into()]),
            ("env name relaxed allows dots and dashes", "", "pods",
             with(&p, &[("/spec/containers/0/env/0/name", json!("my.var-1"))]), vec![]),
            ("volume mount must name a volume", "", "pods",
             with(&p, &[("/spec/containers/0/volumeMounts/0/name", json!("missing"))]),
             vec!["spec.containers[0].volumeMounts[0].name: Not found: \"missing\"".into()]),
            ("mount paths unique", "", "pods",
             with(&p, &[("/spec/containers/0/volumeMounts/1/mountPath", json!("/data"))]),
             vec!["spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/data\": must be unique".into()]),
            ("two volume sources", "", "pods",
             with(&p, &[("/spec/volumes/0", json!({"name": "data", "emptyDir": {}, "secret": {"secretName": "s"}}))]),
             vec!["spec.volumes[0].secret: Forbidden: may not specify more than 1 volume type".into()]),
            ("no volume source", "", "pods", with(&p, &[("/spec/volumes/0", json!({"name": "data"}))]),
             vec!["spec.volumes[0]: Required value: must specify a volume type".into()]),
            ("duplicate volumes", "", "pods", with(&p, &[("/spec/volumes/1/name", json!("data"))]),
             vec!["spec.volumes[1].name: Duplicate value: \"data\"".into(),
                  "spec.containers[0].volumeMounts[1].name: Not found: \"config\"".into()]),
            ("request above limit", "", "pods", with(&p, &[("/spec/containers/0/resources/requests/cpu", json!("1"))]),
             vec!["spec.containers[0].resources.requests[cpu]: Invalid value: \"1\": must be less than or equal to cpu limit of 500m".into()]),
            ("memory request above limit in binary units", "", "pods",
             with(&p, &[("/spec/containers/0/resources/requests/memory", json!("200M"))]),
             vec!["spec.containers[0].resources.requests[memory]: Invalid value: \"200M\": must be less than or equal to memory limit of 128Mi".into()]),
            ("restartPolicy enum", "", "pods", with(&p, &[("/spec/restartPolicy", json!("Sometimes"))]),
             vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".into()]),
            ("dnsPolicy enum", "", "pods", with(&p, &[("/spec/dnsPolicy", json!("Google"))]),
             vec!["spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"".into()]),
            ("imagePullPolicy enum", "", "pods", with(&p, &[("/spec/containers/0/imagePullPolicy", json!("Sometimes"))]),
             vec!["spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"".into()]),
            ("liveness successThreshold", "", "pods", with(&p, &[("/spec/containers/0/livenessProbe/successThreshold", json!(2))]),
             vec!["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1".into()]),
            ("probe needs a handler", "", "pods",
             with(&p, &[("/spec/containers/0/livenessProbe", json!({"periodSeconds": 10, "successThreshold": 1}))]),
             vec!["spec.containers[0].livenessProbe: Required value: must specify a handler type".into()]),
            ("probe with two handlers", "", "pods",
             with(&p, &[("/spec/containers/0/readinessProbe", json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}))]),
             vec!["spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type".into()]),
            ("activeDeadlineSeconds positive", "", "pods", with(&p, &[("/spec/activeDeadlineSeconds", json!(0))]),
             vec!["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".into()]),
            ("toleration Exists with value", "", "pods",
             with(&p, &[("/spec/tolerations", json!([{"key": "k", "operator": "Exists", "value": "v"}]))]),
             vec!["spec.tolerations[0].operator: Invalid value: {\"key\":\"k\",\"operator\":\"Exists\",\"value\":\"v\"}: value must be empty when `operator` is 'Exists'".into()]),
            ("toleration effect", "", "pods",
             with(&p, &[("/spec/tolerations", json!([{"key": "k", "operator": "Equal", "value": "v", "effect": "Never"}]))]),
             vec!["spec.tolerations[0].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".into()]),
            ("hostname is a label", "", "pods", with(&p, &[("/spec/hostname", json!("a.b"))]),
             vec!["spec.hostname: Invalid value: \"a.b\": must not contain dots".into()]),
            ("init container probes need restartPolicy Always", "", "pods",
             with(&p, &[("/spec/initContainers", json!([{"name": "init", "image": "busybox", "imagePullPolicy": "Always",
                "terminationMessagePolicy": "File", "readinessProbe": {"exec": {"command": ["true"]}}}]))]),
             vec!["spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always".into()]),
            ("sidecar init containers may have probes", "", "pods",
             with(&p, &[("/spec/initContainers", json!([{"name": "side", "image": "envoy", "imagePullPolicy": "Always",
                "terminationMessagePolicy": "File", "restartPolicy": "Always",
                "startupProbe": {"exec": {"command": ["true"]}, "successThreshold": 1}}]))]),
             vec![]),
            ("nodeSelector values", "", "pods", with(&p, &[("/spec/nodeSelector", json!({"disk": "ssd!"}))]),
             vec!["spec.nodeSelector: Invalid value: \"ssd!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into()]),
            ("deployment selector mismatch", "apps", "deployments",
             with(&d, &[("/spec/selector/matchLabels/app", json!("api"))]),
             vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"web\",\"tier\":\"front\"}: `selector` does not match template `labels`".into()]),
            ("deployment selector required", "apps", "deployments", with(&d, &[("/spec/selector", Value::Null)]),
             vec!["spec.selector: Required value".into()]),
            ("deployment empty selector", "apps", "deployments", with(&d, &[("/spec/selector", json!({}))]),
             vec!["spec.selector: Invalid value: {}: empty selector is invalid for deployment".into()]),
            ("deployment negative replicas", "apps", "deployments", with(&d, &[("/spec/replicas", json!(-1))]),
             vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0".into()]),
            ("deployment template restartPolicy", "apps", "deployments",
             with(&d, &[("/spec/template/spec/restartPolicy", json!("Never"))]),
             vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".into()]),
            ("deployment template needs no image", "apps", "deployments",
             with(&d, &[("/spec/template/spec/containers/0/image", Value::Null)]), vec![]),
            ("maxSurge and maxUnavailable both 0", "apps", "deployments",
             with(&d, &[("/spec/strategy/rollingUpdate", json!({"maxSurge": 0, "maxUnavailable": "0%"}))]),
             vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0".into()]),
            ("maxUnavailable over 100%", "apps", "deployments",
             with(&d, &[("/spec/strategy/rollingUpdate/maxUnavailable", json!("150%"))]),
             vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%".into()]),
            ("Recreate forbids rollingUpdate", "apps", "deployments",
             with(&d, &[("/spec/strategy/type", json!("Recreate"))]),
             vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'".into()]),
            ("revisionHistoryLimit", "apps", "deployments", with(&d, &[("/spec/revisionHistoryLimit", json!(-2))]),
             vec!["spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0".into()]),
            ("statefulset podManagementPolicy", "apps", "statefulsets",
             with(&statefulset(), &[("/spec/podManagementPolicy", json!("Random"))]),
             vec!["spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'".into()]),
            ("job restartPolicy", "batch", "jobs", with(&job(), &[("/spec/template/spec/restartPolicy", json!("Always"))]),
             vec!["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into()]),
            ("job negative completions", "batch", "jobs", with(&job(), &[("/spec/completions", json!(-1))]),
             vec!["spec.completions: Invalid value: -1: must be greater than or equal to 0".into()]),
            ("cronjob schedule required", "batch", "cronjobs",
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"concurrencyPolicy": "Allow", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}],
                "restartPolicy": "Never", "dnsPolicy": "ClusterFirst"}}}}}}),
             vec!["spec.schedule: Required value".into()]),
            ("cronjob bad schedule", "batch", "cronjobs",
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"schedule": "61 * * * *", "concurrencyPolicy": "Allow", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}],
                "restartPolicy": "Never", "dnsPolicy": "ClusterFirst"}}}}}}),
             vec!["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61".into()]),
            ("service ports required", "", "services", with(&s, &[("/spec/ports", json!([]))]),
             vec!["spec.ports: Required value".into()]),
            ("headless service needs no ports", "", "services",
             with(&s, &[("/spec/ports", json!([])), ("/spec/clusterIP", json!("None")), ("/spec/clusterIPs", json!(["None"]))]), vec![]),
            ("service port names required with two ports", "", "services",
             with(&s, &[("/spec/ports/1/name", Value::Null)]),
             vec!["spec.ports[1].name: Required value".into()]),
            ("service port range", "", "services", with(&s, &[("/spec/ports/0/port", json!(0))]),
             vec!["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into()]),
            ("service type enum", "", "services", with(&s, &[("/spec/type", json!("Magic"))]),
             vec!["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into()]),
            ("None clusterIP with NodePort", "", "services",
             with(&s, &[("/spec/type", json!("NodePort")), ("/spec/clusterIP", json!("None")), ("/spec/clusterIPs", json!(["None"])),
                        ("/spec/externalTrafficPolicy", json!("Cluster"))]),
             vec!["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer or NodePort services".into()]),
            ("nodePort range", "", "services",
             with(&s, &[("/spec/type", json!("NodePort")), ("/spec/ports/0/nodePort", json!(80)), ("/spec/externalTrafficPolicy", json!("Cluster"))]),
             vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767".into()]),
            ("ExternalName needs externalName", "", "services",
             json!({"metadata": {"name": "ext", "namespace": "d"}, "spec": {"type": "ExternalName"}}),
             vec!["spec.externalName: Required value".into()]),
            ("configmap key", "", "configmaps", json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "x"}}),
             vec!["data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into()]),
            ("configmap too big", "", "configmaps",
             json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "x".repeat(MAX_SECRET_SIZE + 1)}}),
             vec![": Too long: may not be more than 1048576 bytes".into()]),
            ("tls secret keys", "", "secrets", json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {}}),
             vec!["data[tls.key]: Required value".into(), "data[tls.crt]: Required value".into()]),
            ("node taint effect", "", "nodes",
             json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.0.0/24", "taints": [{"key": "k", "effect": ""}]}}),
             vec!["spec.taints[0].effect: Required value".into()]),
            ("node podCIDR", "", "nodes", json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.0.0"}}),
             vec!["spec.podCIDR: Invalid value: \"10.244.0.0\": must be a valid CIDR".into()]),
            ("pvc requirements", "", "persistentvolumeclaims", json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {}}),
             vec!["spec.accessModes: Required value: at least 1 access mode is required".into(),
                  "spec.resources[storage]: Required value".into()]),
            ("pv source", "", "persistentvolumes",
             json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}),
             vec!["spec: Required value: must specify a volume type".into()]),
            ("storageclass provisioner", "storage.k8s.io", "storageclasses",
             json!({"metadata": {"name": "s"}, "reclaimPolicy": "Recycle"}),
             vec!["provisioner: Required value".into(),
                  "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"".into()]),
            ("hpa", "autoscaling", "horizontalpodautoscalers",
             json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"scaleTargetRef": {"kind": "Deployment"}, "minReplicas": 5, "maxReplicas": 2}}),
             vec!["spec.scaleTargetRef.name: Required value".into(),
                  "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`".into()]),
            ("hpa minReplicas", "autoscaling", "horizontalpodautoscalers",
             json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 0, "maxReplicas": 2}}),
             vec!["spec.minReplicas: Invalid value: 0: must be greater than or equal to 1".into()]),
            ("priorityclass", "scheduling.k8s.io", "priorityclasses",
             json!({"metadata": {"name": "system-mine"}, "value": 2_000_000_000i64}),
             vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved".into(),
                  "value: Forbidden: maximum allowed value of a user defined priority is 1000000000".into()]),
            ("pdb both set", "policy", "poddisruptionbudgets",
             json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}}),
             vec!["spec: Invalid value: {\"minAvailable\":1,\"maxUnavailable\":1}: minAvailable and maxUnavailable cannot be both set".into()]),
            ("event namespace", "", "events",
             json!({"metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod", "namespace": "other"}, "type": "Normal"}),
             vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace".into()]),
            ("lease duration", "coordination.k8s.io", "leases",
             json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}}),
             vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0".into()]),
            ("endpoints ip", "", "endpoints",
             json!({"metadata": {"name": "e", "namespace": "d"}, "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]}),
             vec!["subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)".into()]),
            ("endpointslice address type", "discovery.k8s.io", "endpointslices",
             json!({"metadata": {"name": "e", "namespace": "d"}, "addressType": "IPv4", "endpoints": [{"addresses": ["fe80::1"]}]}),
             vec!["endpoints[0].addresses[0]: Invalid value: \"fe80::1\": must be a valid IPv4 address".into()]),
            ("serviceaccount", "", "serviceaccounts", json!({"metadata": {"name": "Bad"}}),
             vec!["metadata.name: Invalid value: \"Bad\": ".to_string() + SUBDOMAIN_MSG, "metadata.namespace: Required value".into()]),
        ];
        assert!(cases.len() >= 40);
        for (name, g, r, obj, want) in cases {
            assert_eq!(create(g, r, &obj), want, "case: {name}");
        }
    }

    #[test]
    fn update_rules() {
        let p = pod();
        let d = deployment();
        let s = service();
        let sts = statefulset();
        let cases: Vec<UpdateCase> = vec![
            ("pod image may change", "", "pods", with(&p, &[("/spec/containers/0/image", json!("nginx:1.28"))]), p.clone(), vec![]),
            ("pod toleration may be added", "", "pods",
             with(&p, &[("/spec/tolerations", json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300}, {"key": "x", "operator": "Exists"}]))]), p.clone(), vec![]),
            ("pod port change is forbidden", "", "pods",
             with(&p, &[("/spec/containers/0/ports/0/containerPort", json!(8080))]), p.clone(),
             vec![format!("spec: Forbidden: {POD_UPDATABLE}")]),
            ("pod may not add containers", "", "pods",
             with(&p, &[("/spec/containers", json!([container(), with(&container(), &[("/name", json!("two")), ("/volumeMounts", json!([]))])]))]),
             p.clone(), vec!["spec.containers: Forbidden: pod updates may not add or remove containers".into()]),
            ("pod name immutable", "", "pods", with(&p, &[("/metadata/name", json!("web-1"))]), p.clone(),
             vec!["metadata.name: Invalid value: \"web-1\": field is immutable".into()]),
            ("uid immutable", "", "pods", with(&p, &[("/metadata/uid", json!("u2"))]), p.clone(),
             vec!["metadata.uid: Invalid value: \"u2\": field is immutable".into()]),
            ("creationTimestamp immutable", "", "pods",
             with(&p, &[("/metadata/creationTimestamp", json!("2025-01-01T00:00:00Z"))]), p.clone(),
             vec!["metadata.creationTimestamp: Invalid value: \"2025-01-01T00:00:00Z\": field is immutable".into()]),
            ("deployment selector immutable", "apps", "deployments",
             with(&d, &[("/spec/selector/matchLabels/tier", json!("front"))]), d.clone(),
             vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"tier\":\"front\"}}: field is immutable".into()]),
            ("deployment scale is fine", "apps", "deployments", with(&d, &[("/spec/replicas", json!(5))]), d.clone(), vec![]),
            ("statefulset replicas may change", "apps", "statefulsets", with(&sts, &[("/spec/replicas", json!(3))]), sts.clone(), vec![]),
            ("statefulset serviceName may not", "apps", "statefulsets", with(&sts, &[("/spec/serviceName", json!("db2"))]), sts.clone(),
             vec![format!("spec: Forbidden: {STS_UPDATABLE}")]),
            ("service clusterIP immutable", "", "services",
             with(&s, &[("/spec/clusterIP", json!("10.96.0.11")), ("/spec/clusterIPs", json!(["10.96.0.11"]))]), s.clone(),
             vec!["spec.clusterIPs[0]: Invalid value: [\"10.96.0.11\"]: may not change once set".into()]),
            ("job template immutable", "batch", "jobs",
             with(&job(), &[("/spec/template/spec/containers/0/image", json!("perl:2"))]), job(),
             vec![format!("spec.template: Invalid value: {}: field is immutable",
                 with(&job(), &[("/spec/template/spec/containers/0/image", json!("perl:2"))])["spec"]["template"])]),
            ("secret type immutable", "", "secrets",
             json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"}),
             json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": "YQ=="}}),
             vec!["type: Invalid value: \"Opaque\": field is immutable".into()]),
            ("immutable configmap data", "", "configmaps",
             json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "2"}}),
             json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}}),
             vec!["data: Forbidden: field is immutable when `immutable` is set".into()]),
            ("storageclass parameters", "storage.k8s.io", "storageclasses",
             json!({"metadata": {"name": "s"}, "provisioner": "p.io/x", "parameters": {"a": "2"}}),
             json!({"metadata": {"name": "s"}, "provisioner": "p.io/x", "parameters": {"a": "1"}}),
             vec!["parameters: Forbidden: updates to parameters are forbidden.".into()]),
            ("pvc bound may grow", "", "persistentvolumeclaims",
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1",
                    "resources": {"requests": {"storage": "2Gi"}}}, "status": {"phase": "Bound"}}),
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1",
                    "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Bound"}}),
             vec![]),
            ("pvc without a class may get one, once", "", "persistentvolumeclaims",
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                    "resources": {"requests": {"storage": "1Gi"}}}}),
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}),
             vec![]),
            ("pvc class may not change", "", "persistentvolumeclaims",
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "b",
                    "resources": {"requests": {"storage": "1Gi"}}}}),
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "a",
                    "resources": {"requests": {"storage": "1Gi"}}}}),
             vec!["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into()]),
            ("pvc may not shrink or change modes", "", "persistentvolumeclaims",
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteMany"], "volumeName": "pv1",
                    "resources": {"requests": {"storage": "500Mi"}}}, "status": {"phase": "Bound"}}),
             json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1",
                    "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Bound"}}),
             vec!["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
                  "spec.resources.requests.storage: Forbidden: field can not be less than previous value".into()]),
        ];
        for (name, g, r, obj, old, want) in cases {
            assert_eq!(update(g, r, &obj, &old), want, "case: {name}");
        }
    }

    #[test]
    fn name_formats() {
        assert!(is_dns1123_subdomain("example.com").is_empty());
        assert_eq!(
            is_dns1123_subdomain("Foo_bar"),
            vec![SUBDOMAIN_MSG.to_string()]
        );
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters".to_string()]
        );
        assert!(is_dns1123_label("my-name").is_empty());
        assert_eq!(is_dns1123_label("-a"), vec![LABEL_MSG.to_string()]);
        assert!(is_dns1035_label("abc-123").is_empty());
        assert_eq!(is_dns1035_label("1abc").len(), 1);
        assert!(is_qualified_name("example.com/MyName").is_empty());
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty".to_string()]
        );
        assert_eq!(
            is_qualified_name("Example.com/a")[0],
            format!("prefix part {SUBDOMAIN_MSG}")
        );
        assert!(is_qualified_name("a/b/c")[0].starts_with("a qualified name must consist of"));
        assert!(is_valid_label_value("").is_empty());
        assert_eq!(
            is_valid_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
        assert_eq!(
            is_valid_port_name("Http--"),
            vec![
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must not contain consecutive hyphens",
                "must not begin or end with a hyphen"
            ]
        );
        assert_eq!(
            is_config_map_key(".."),
            vec!["must not be '..'".to_string()]
        );
    }

    #[test]
    fn quantities_parse_and_compare() {
        let q = |s: &str| parse_quantity(s).unwrap().nanos;
        assert_eq!(q("500m"), 500_000_000);
        assert_eq!(q("1"), 1_000_000_000);
        assert_eq!(q("0.5"), q("500m"));
        assert_eq!(q("1Ki"), 1024 * 1_000_000_000);
        assert_eq!(q("1k"), 1000 * 1_000_000_000);
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E-3"), q("1m"));
        assert_eq!(q("-2Gi"), -(2i128 << 30) * 1_000_000_000);
        assert_eq!(q("1n"), 1);
        assert_eq!(q("1.5Mi"), (3i128 << 19) * 1_000_000_000);
        assert!(q("128Mi") < q("200M"));
        assert_eq!(q("+.5"), q("500m"));
        assert_eq!(q("1Ei"), (1i128 << 60) * 1_000_000_000);
        for bad in ["", "abc", "1.2.3", "1Q", "1e", "--1", "1 Gi", "."] {
            assert!(parse_quantity(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cron_schedules() {
        for ok in [
            "* * * * *",
            "*/15 0-6 1,15 JAN-mar mon-fri",
            "@hourly",
            "@every 1h30m",
            "0 0 ? * 0",
        ] {
            assert_eq!(parse_cron(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            parse_cron("* * *"),
            Err("expected exactly 5 fields, found 3: [* * *]".to_string())
        );
        assert_eq!(
            parse_cron("* * * * 7"),
            Err("end of range (7) above maximum (6): 7".to_string())
        );
        assert_eq!(
            parse_cron("*/0 * * * *"),
            Err("step of range should be a positive number: */0".to_string())
        );
        assert_eq!(
            parse_cron("x * * * *"),
            Err(
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
                    .to_string()
            )
        );
        assert_eq!(
            parse_cron("@sometimes"),
            Err("unrecognized descriptor: @sometimes".to_string())
        );
    }

    #[test]
    fn selectors_match_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        let labels = labels.as_object().unwrap();
        let sel = json!({"matchLabels": {"app": "web"},
                         "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]},
                                              {"key": "canary", "operator": "DoesNotExist"}]});
        assert!(selector_matches(&sel, labels));
        let sel = json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]});
        assert!(!selector_matches(&sel, labels));
        assert_eq!(
            validate_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "spec.selector"
            )
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
            vec![
                "spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            ]
        );
    }

    #[test]
    fn missing_fields_do_not_panic() {
        for r in crate::catalog::RESOURCES {
            for obj in [
                json!({}),
                json!(null),
                json!({"metadata": 5, "spec": "x"}),
                json!({"spec": {"containers": [null, 3], "template": {"spec": {"containers": "x"}}}}),
            ] {
                let _ = validate_create(r, &obj);
                let _ = validate_update(r, &obj, &json!({}));
            }
        }
    }
}
