//! Label and field selectors, parsed, printed and matched as the Kubernetes
//! apiserver does.
//!
//! # Layout
//! - [`LabelSelector`]: the `?labelSelector=` / `kubectl -l` syntax
//!   ([`LabelSelector::parse`]) and `metav1.LabelSelector` objects
//!   ([`LabelSelector::from_object`]); a conjunction of [`Requirement`]s.
//! - [`FieldSelector`]: the `?fieldSelector=` syntax, with the per-kind list of
//!   field labels the apiserver accepts ([`FieldSelector::validate_for`]) and
//!   the values it compares them with ([`field_value`]).
//! - [`SelectorError`]: every failure, with the text the apiserver returns.
//!
//! Facts follow apimachinery `pkg/labels/selector.go`, `pkg/fields/selector.go`,
//! `metav1.LabelSelectorAsSelector`, the `AddFieldLabelConversionFunc`
//! registrations in `pkg/apis/*/v1/conversion.go` and the `ToSelectableFields`
//! functions in `pkg/registry/*/strategy.go`.

use crate::catalog::ResourceInfo;
use crate::meta;
use serde_json::Value;
use std::fmt;

/// A selector that could not be parsed, built or applied; `Display` is the
/// message the Kubernetes apiserver puts in its 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string that does not parse, or whose requirement is
    /// invalid: `unable to parse requirement: …`, `found 'c', expected: …`.
    #[error("{0}")]
    LabelSyntax(String),
    /// A `metav1.LabelSelector` requirement that fails validation, as the
    /// aggregated field errors of `labels.NewRequirement`
    /// (`values: Invalid value: []string(nil): …`).
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions` operator other than In, NotIn, Exists, DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    InvalidOperator(String),
    /// A `metav1.LabelSelector` whose JSON has the wrong shape.
    #[error("{0}")]
    Malformed(String),
    /// A field selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldSyntax {
        /// The whole selector.
        selector: String,
        /// The term that has no operator.
        term: String,
    },
    /// A backslash not followed by `\`, `,` or `=` in a field selector value.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// An unescaped `,` or `=` in a field selector value; Kubernetes prints
    /// the character's code point (`61` for `=`).
    #[error("invalid field selector: unescapedRune character in value: {}", u32::from(*.0))]
    UnescapedRune(char),
    /// A field label the resource does not support; the text depends on the
    /// kind (`field label not supported: spec.foo`, or
    /// `"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"`).
    #[error("{message}")]
    UnsupportedField {
        /// The field label as the client sent it.
        field: String,
        /// The apiserver's message.
        message: String,
    },
}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value`.
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value`: also matches objects without the label.
    NotEquals,
    /// `key in (a,b)`: the label exists with one of the values.
    In,
    /// `key notin (a,b)`: also matches objects without the label.
    NotIn,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label does not exist.
    DoesNotExist,
    /// `key>5`: the label exists and is an integer greater than the value.
    GreaterThan,
    /// `key<5`: the label exists and is an integer less than the value.
    LessThan,
}

/// One requirement of a label selector: a key, an operator and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (sorted and deduplicated when parsed from a string).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Builds a requirement, validating it as `labels.NewRequirement` does;
    /// the error is the aggregate of every field error, as Kubernetes prints it.
    fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errs: Vec<String> = Vec::new();
        if let Some(e) = key_error(key, "key") {
            errs.push(e);
        }
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                go_string_slice(&values)
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    go_string_slice(&values)
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(format!(
                    "values: Invalid value: {}: values set must be empty for exists and does not exist",
                    go_string_slice(&values)
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        go_string_slice(&values)
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = label_value_errors(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    msgs.join("; ")
                ));
            }
        }
        if errs.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(aggregate(errs))
        }
    }

    fn has_value(&self, v: &str) -> bool {
        self.values.iter().any(|x| x == v)
    }

    /// Whether labels (looked up by key) satisfy this requirement.
    fn matches<'a>(&self, labels: &impl Fn(&str) -> Option<&'a str>) -> bool {
        let value = labels(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: a conjunction of requirements, kept sorted by key.
///
/// The default selector is empty and matches everything; [`LabelSelector::nothing`]
/// (what a `null` `metav1.LabelSelector` means) matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (`labels.Nothing()`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `?labelSelector=` / `kubectl -l` syntax: `a=b`, `a==b`, `a!=b`,
    /// `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, joined by commas,
    /// with blanks allowed between tokens. Errors carry `labels.Parse`'s text.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(s).parse().map_err(SelectorError::LabelSyntax)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels` and `matchExpressions`)
    /// as `metav1.LabelSelectorAsSelector` does: `null` matches nothing, `{}`
    /// matches everything, an unknown operator or invalid requirement fails
    /// with Kubernetes' message.
    pub fn from_object(sel: &Value) -> Result<Self, SelectorError> {
        let obj = match sel {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(o) => o,
            other => {
                return Err(SelectorError::Malformed(format!(
                    "label selector must be an object, got {}",
                    json_type(other)
                )));
            }
        };
        let labels = match obj.get("matchLabels") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                return Err(SelectorError::Malformed(format!(
                    "matchLabels must be an object, got {}",
                    json_type(other)
                )));
            }
        };
        let exprs = match obj.get("matchExpressions") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a),
            Some(other) => {
                return Err(SelectorError::Malformed(format!(
                    "matchExpressions must be an array, got {}",
                    json_type(other)
                )));
            }
        };
        let mut requirements = Vec::new();
        for (k, v) in labels.into_iter().flatten() {
            let Some(v) = v.as_str() else {
                return Err(SelectorError::Malformed(format!(
                    "matchLabels[{k}] must be a string, got {}",
                    json_type(v)
                )));
            };
            let r = Requirement::new(k, Operator::Equals, vec![v.to_string()])
                .map_err(SelectorError::InvalidRequirement)?;
            requirements.push(r);
        }
        for (i, e) in exprs.into_iter().flatten().enumerate() {
            let field = |name: &str| -> Result<&str, SelectorError> {
                match e.get(name) {
                    None | Some(Value::Null) => Ok(""),
                    Some(Value::String(s)) => Ok(s),
                    Some(other) => Err(SelectorError::Malformed(format!(
                        "matchExpressions[{i}].{name} must be a string, got {}",
                        json_type(other)
                    ))),
                }
            };
            let key = field("key")?;
            let op = match field("operator")? {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::InvalidOperator(other.to_string())),
            };
            let values = match e.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or_else(|| {
                            SelectorError::Malformed(format!(
                                "matchExpressions[{i}].values must hold strings, got {}",
                                json_type(v)
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(SelectorError::Malformed(format!(
                        "matchExpressions[{i}].values must be an array, got {}",
                        json_type(other)
                    )));
                }
            };
            let r = Requirement::new(key, op, values).map_err(SelectorError::InvalidRequirement)?;
            requirements.push(r);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether a set of labels, looked up by key, satisfies every requirement.
    pub fn matches<'a>(&self, labels: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(&labels))
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(|k| meta::label(obj, k))
    }

    /// Whether the selector restricts nothing (matches every object).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The single value the selector requires for `key` (`key=v`, `key==v`,
    /// `key in (v)`), as `RequiresExactMatch`; lets a store use an index.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// Kubernetes' `String()`: requirements sorted by key, joined by `,`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Lexer tokens of the label selector syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Error,
    End,
    ClosePar,
    Comma,
    Not,
    DoubleEq,
    Eq,
    Gt,
    Ident,
    In,
    Lt,
    NotEq,
    NotIn,
    OpenPar,
}

fn literal_token(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosePar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "==" => Tok::DoubleEq,
        "=" => Tok::Eq,
        ">" => Tok::Gt,
        "in" => Tok::In,
        "<" => Tok::Lt,
        "!=" => Tok::NotEq,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a label selector into tokens, ending with `Tok::End`. Splits only at
/// ASCII bytes, so every literal is valid UTF-8.
fn lex(s: &str) -> Vec<(Tok, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_blank(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Tok::End, String::new()));
            return out;
        }
        let start = pos;
        if is_special(b[pos]) {
            // Longest run of special bytes that still forms a known symbol.
            let mut best: Option<(Tok, usize)> = None;
            let mut end = pos;
            while end < b.len() && is_special(b[end]) {
                end += 1;
                match literal_token(&s[start..end]) {
                    Some(t) => best = Some((t, end)),
                    None if best.is_some() => break,
                    None => {}
                }
            }
            match best {
                Some((t, e)) => {
                    out.push((t, s[start..e].to_string()));
                    pos = e;
                }
                None => {
                    out.push((
                        Tok::Error,
                        format!("error expected: keyword found '{}'", &s[start..end]),
                    ));
                    pos = end;
                }
            }
        } else {
            while pos < b.len() && !is_special(b[pos]) && !is_blank(b[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            let tok = literal_token(word).unwrap_or(Tok::Ident);
            out.push((tok, word.to_string()));
        }
    }
}

/// Whether `in`/`notin` are read as operators (after a key) or as plain values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    fn new(s: &str) -> Self {
        Parser {
            items: lex(s),
            pos: 0,
        }
    }

    fn peek(&self, ctx: Ctx) -> (Tok, String) {
        let (t, l) = &self.items[self.pos.min(self.items.len() - 1)];
        (Self::in_ctx(*t, ctx), l.clone())
    }

    fn next(&mut self, ctx: Ctx) -> (Tok, String) {
        let item = self.peek(ctx);
        if self.pos < self.items.len() - 1 {
            self.pos += 1;
        }
        item
    }

    fn in_ctx(t: Tok, ctx: Ctx) -> Tok {
        match (t, ctx) {
            (Tok::In | Tok::NotIn, Ctx::Values) => Tok::Ident,
            _ => t,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.peek(Ctx::Values);
            match tok {
                Tok::Ident | Tok::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.next(Ctx::Values);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.peek(Ctx::Values);
                            if t2 != Tok::Ident && t2 != Tok::Not {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (key, unary) = self.key_and_inferred_operator()?;
        if let Some(op) = unary {
            return Requirement::new(&key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    /// The key, and `Exists`/`DoesNotExist` when no binary operator follows.
    fn key_and_inferred_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.next(Ctx::Values);
        let mut op = None;
        if tok == Tok::Not {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.next(Ctx::Values);
        }
        if tok != Tok::Ident {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        // The parser checks the key before building the requirement, with no
        // field path: Kubernetes prints a nil path as `<nil>`.
        if let Some(e) = key_error(&lit, "<nil>") {
            return Err(e);
        }
        let (next, _) = self.peek(Ctx::Values);
        if (next == Tok::End || next == Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.next(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::Eq => Operator::Equals,
            Tok::DoubleEq => Operator::DoubleEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEq => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `(a,b,…)`; empty members are the empty string. Sorted and deduplicated.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.next(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.peek(Ctx::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                let set = self.identifier_list()?;
                if self.next(Ctx::Values).0 != Tok::ClosePar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Tok::ClosePar => {
                self.next(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifier_list(&mut self) -> Result<Vec<String>, String> {
        let mut set: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.next(Ctx::Values);
            match tok {
                Tok::Ident => {
                    set.push(lit);
                    let (t2, l2) = self.peek(Ctx::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosePar => break,
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if set.is_empty() {
                        set.push(String::new());
                    }
                    match self.peek(Ctx::Values).0 {
                        Tok::ClosePar => {
                            set.push(String::new());
                            break;
                        }
                        Tok::Comma => {
                            self.next(Ctx::Values);
                            set.push(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
        set.sort();
        set.dedup();
        Ok(set)
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.peek(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.next(Ctx::Values);
        if tok == Tok::Ident {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

// ---------------------------------------------------------------------------
// Validation of label keys and values (apimachinery util/validation)
// ---------------------------------------------------------------------------

const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// Kubernetes' `RegexError`: the message, its examples and the regex.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => alnum(f) && alnum(l) && b.iter().all(|c| alnum(c) || *c == b'-'),
            _ => false,
        }
    })
}

/// `IsQualifiedName`: a label key, `[prefix/]name`.
fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                let mut msgs = Vec::new();
                if prefix.len() > 253 {
                    msgs.push(max_len_error(253));
                }
                if !is_dns1123_subdomain(prefix) {
                    msgs.push(regex_error(
                        DNS1123_SUBDOMAIN_MSG,
                        DNS1123_SUBDOMAIN_FMT,
                        &["example.com"],
                    ));
                }
                errs.extend(msgs.into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !is_qualified_name_part(name) {
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

/// `IsValidLabelValue`.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// The field error for an invalid label key at `path`, if any.
fn key_error(key: &str, path: &str) -> Option<String> {
    let msgs = qualified_name_errors(key);
    (!msgs.is_empty()).then(|| {
        format!(
            "{path}: Invalid value: {}: {}",
            go_quote(key),
            msgs.join("; ")
        )
    })
}

/// `utilerrors.NewAggregate` of deduplicated messages: one message alone, or `[a, b]`.
fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    if errs.len() == 1 {
        errs.remove(0)
    } else {
        format!("[{}]", errs.join(", "))
    }
}

/// Go's `%q` for a string.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` for a `[]string` built by copying (`nil` when empty).
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    /// The field label as written (`spec.nodeName`).
    pub field: String,
    /// `true` for `!=`, `false` for `=` and `==`.
    pub negated: bool,
    /// The unescaped value.
    pub value: String,
}

/// A field selector: a conjunction of equality and inequality terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses the `?fieldSelector=` syntax as `fields.ParseSelector` does:
    /// comma-separated `a=b`, `a==b`, `a!=b` terms (sorted), values unescaped
    /// (`\\`, `\,`, `\=`). The field is split at the first operator and not trimmed.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(SelectorError::FieldSyntax {
                    selector: s.to_string(),
                    term: part.to_string(),
                });
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                negated: op == "!=",
                value: unescape_value(rhs)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// The terms, in Kubernetes' order (sorted by their source text).
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// Whether the selector restricts nothing.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value an `=` term requires for `field`, as `RequiresExactMatch`.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }

    /// Checks every field label against what the apiserver accepts for the
    /// resource; the first unsupported one fails with the apiserver's text.
    pub fn validate_for(&self, r: &ResourceInfo) -> Result<(), SelectorError> {
        for t in &self.terms {
            convert_label(r, &t.field)?;
        }
        Ok(())
    }

    /// Whether the object (in the resource's version) satisfies every term.
    /// A field the resource does not support reads as "": call
    /// [`FieldSelector::validate_for`] first to reject such selectors.
    pub fn matches(&self, r: &ResourceInfo, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let have = field_value(r, obj, &t.field).unwrap_or_default();
            (have == t.value) != t.negated
        })
    }
}

impl fmt::Display for FieldSelector {
    /// Kubernetes' `String()`: `field=value` / `field!=value`, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if t.negated { "!=" } else { "=" };
            write!(f, "{}{op}{}", t.field, escape_value(&t.value))?;
        }
        Ok(())
    }
}

/// Splits at commas not preceded by a backslash escape; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first `!=`, `==` or `=`.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(SelectorError::InvalidEscape(format!("\\{c}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedRune(c)),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscape("\\".to_string()));
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

/// Maps a field label in the resource's version to the name used by the
/// selectable field set (`AddFieldLabelConversionFunc`), or fails with the
/// apiserver's message for that kind.
fn convert_label(r: &ResourceInfo, label: &str) -> Result<&'static str, SelectorError> {
    let one_of = |allowed: &[&'static str]| allowed.iter().copied().find(|a| *a == label);
    let not_supported = || SelectorError::UnsupportedField {
        field: label.to_string(),
        message: format!("field label not supported: {label}"),
    };
    match (r.group, r.kind) {
        ("", "Pod") => {
            if label == "spec.host" {
                // Old v1 clients sent spec.host.
                return Ok("spec.nodeName");
            }
            one_of(POD_FIELDS).ok_or_else(not_supported)
        }
        ("", "Node") => one_of(&["metadata.name", "spec.unschedulable"]).ok_or_else(not_supported),
        ("", "ReplicationController") => {
            one_of(&["metadata.name", "metadata.namespace", "status.replicas"])
                .ok_or_else(not_supported)
        }
        ("", "Event") => one_of(EVENT_FIELDS).ok_or_else(not_supported),
        ("", "Namespace") => one_of(&["status.phase", "metadata.name"]).ok_or_else(not_supported),
        ("", "Secret") => {
            one_of(&["type", "metadata.namespace", "metadata.name"]).ok_or_else(not_supported)
        }
        ("", "Service") => one_of(&[
            "metadata.namespace",
            "metadata.name",
            "spec.clusterIP",
            "spec.type",
        ])
        .ok_or_else(not_supported),
        ("batch", "Job") => one_of(&["metadata.name", "metadata.namespace", "status.successful"])
            .ok_or_else(|| SelectorError::UnsupportedField {
                field: label.to_string(),
                message: format!("field label {} not supported for batchv1.Job", go_quote(label)),
            }),
        ("events.k8s.io", "Event") => Ok(match label {
            "reason" => "reason",
            "regarding.kind" => "involvedObject.kind",
            "regarding.namespace" => "involvedObject.namespace",
            "regarding.name" => "involvedObject.name",
            "regarding.uid" => "involvedObject.uid",
            "regarding.apiVersion" => "involvedObject.apiVersion",
            "regarding.resourceVersion" => "involvedObject.resourceVersion",
            "regarding.fieldPath" => "involvedObject.fieldPath",
            "reportingController" => "reportingComponent",
            "source" => "source",
            "type" => "type",
            "metadata.namespace" => "metadata.namespace",
            "metadata.name" => "metadata.name",
            _ => return Err(not_supported()),
        }),
        _ => one_of(&["metadata.name", "metadata.namespace"]).ok_or_else(|| {
            SelectorError::UnsupportedField {
                field: label.to_string(),
                message: format!(
                    "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                    go_quote(label)
                ),
            }
        }),
    }
}

/// The value of a selectable field as Kubernetes renders it for matching:
/// strings as they are, booleans `true`/`false`, integers in decimal, and a
/// missing field as its zero value (`""`, `false`, `0`). `field` is named as
/// the resource's version names it (`regarding.name` for events.k8s.io);
/// `None` when the resource does not support the field.
pub fn field_value(r: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    let internal = convert_label(r, field).ok()?;
    let s = |path: &[&str]| meta::str_at(obj, path).unwrap_or("").to_string();
    let b = |path: &[&str]| {
        meta::at(obj, path)
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string()
    };
    let n = |path: &[&str]| {
        meta::at(obj, path)
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string()
    };
    match internal {
        "metadata.name" => return Some(meta::name(obj).to_string()),
        "metadata.namespace" => {
            return Some(if r.namespaced {
                meta::namespace(obj).to_string()
            } else {
                String::new()
            });
        }
        _ => {}
    }
    let value = match (r.group, r.kind, internal) {
        ("", "Pod", "spec.serviceAccountName") => {
            // The deprecated spec.serviceAccount fills an empty serviceAccountName.
            let name = s(&["spec", "serviceAccountName"]);
            if name.is_empty() {
                s(&["spec", "serviceAccount"])
            } else {
                name
            }
        }
        ("", "Pod", "spec.hostNetwork") => b(&["spec", "hostNetwork"]),
        ("", "Pod", "status.podIP") => {
            // The primary IP is podIPs[0]; v1 objects may carry only podIP.
            meta::at(obj, &["status", "podIPs"])
                .and_then(|ips| ips.get(0))
                .and_then(|ip| ip.get("ip"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| s(&["status", "podIP"]))
        }
        // Accepted by the conversion but absent from the selectable set.
        ("", "Pod", "status.podIPs") => String::new(),
        ("", "Pod", f) => {
            let (a, c) = f.split_once('.').unwrap_or(("", f));
            s(&[a, c])
        }
        ("", "Node", "spec.unschedulable") => b(&["spec", "unschedulable"]),
        ("", "ReplicationController", "status.replicas") => n(&["status", "replicas"]),
        ("", "Namespace", "status.phase") => s(&["status", "phase"]),
        ("", "Secret", "type") => s(&["type"]),
        ("", "Service", "spec.clusterIP") => s(&["spec", "clusterIP"]),
        ("", "Service", "spec.type") => s(&["spec", "type"]),
        ("batch", "Job", "status.successful") => n(&["status", "succeeded"]),
        ("" | "events.k8s.io", "Event", f) => event_field(r, obj, f),
        _ => String::new(),
    };
    Some(value)
}

/// An Event's selectable field (core names), read from either wire shape:
/// core/v1 (`involvedObject`, `source`) or events.k8s.io/v1 (`regarding`,
/// `deprecatedSource`). The object's own apiVersion decides, else the resource's group.
fn event_field(r: &ResourceInfo, obj: &Value, field: &str) -> String {
    let events_api = match meta::str_at(obj, &["apiVersion"]) {
        Some(v) => v.starts_with("events.k8s.io/"),
        None => r.group == "events.k8s.io",
    };
    let s = |path: &[&str]| meta::str_at(obj, path).unwrap_or("").to_string();
    let (regarding, reporting, source) = if events_api {
        ("regarding", "reportingController", "deprecatedSource")
    } else {
        ("involvedObject", "reportingComponent", "source")
    };
    match field {
        "reason" => s(&["reason"]),
        "type" => s(&["type"]),
        "reportingComponent" => s(&[reporting]),
        "source" => {
            let component = s(&[source, "component"]);
            if component.is_empty() {
                s(&[reporting])
            } else {
                component
            }
        }
        f => match f.strip_prefix("involvedObject.") {
            Some(sub) => s(&[regarding, sub]),
            None => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RESOURCES;
    use serde_json::json;

    fn resource(group: &str, plural: &str) -> &'static ResourceInfo {
        RESOURCES
            .iter()
            .find(|r| r.group == group && r.resource == plural)
            .unwrap_or_else(|| panic!("no resource {group}/{plural}"))
    }

    const NAME_PART_REGEX: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_REGEX: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn label_parse_canonical_string() {
        let cases = [
            ("", ""),
            ("a=b", "a=b"),
            ("a==b", "a==b"),
            ("a!=b", "a!=b"),
            ("  a =  b ", "a=b"),
            ("a\t!=\nb", "a!=b"),
            ("a=", "a="),
            ("a", "a"),
            ("!a", "!a"),
            (" ! a ", "!a"),
            ("b in (z,a),a", "a,b in (a,z)"),
            (
                "x in (foo,,baz),y,z notin ()",
                "x in (,baz,foo),y,z notin ()",
            ),
            ("a in (b,b,a)", "a in (a,b)"),
            ("env in (in,notin)", "env in (in,notin)"),
            ("in in (x)", "in in (x)"),
            ("a notin (x)", "a notin (x)"),
            ("n>1,m<5", "m<5,n>1"),
            ("example.com/app=web,tier", "example.com/app=web,tier"),
            ("c=1,b=2,a=3", "a=3,b=2,c=1"),
        ];
        for (input, want) in cases {
            let sel =
                LabelSelector::parse(input).unwrap_or_else(|e| panic!("parse {input:?}: {e}"));
            assert_eq!(sel.to_string(), want, "input {input:?}");
            assert_eq!(sel.is_empty(), want.is_empty(), "input {input:?}");
        }
    }

    #[test]
    fn label_parse_errors_have_kubernetes_text() {
        let cases = [
            ("a=b c", "found 'c', expected: ',' or 'end of string'".to_string()),
            (",a", "found ',', expected: !, identifier, or 'end of string'".to_string()),
            ("a=b,", "found '', expected: identifier after ','".to_string()),
            ("a=b,,c", "found ',', expected: identifier after ','".to_string()),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
                    .to_string(),
            ),
            (
                "a in b",
                "unable to parse requirement: found 'b' expected: '('".to_string(),
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'".to_string(),
            ),
            (
                "a in (b c)",
                "unable to parse requirement: found 'c', expected: ',' or ')'".to_string(),
            ),
            (
                "a in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier"
                    .to_string(),
            ),
            (
                "a=(b)",
                "unable to parse requirement: found '(', expected: identifier".to_string(),
            ),
            ("!", "unable to parse requirement: found '', expected: identifier".to_string()),
            ("!a=b", "found '=', expected: ',' or 'end of string'".to_string()),
            (
                "a>x",
                "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
                    .to_string(),
            ),
            (
                "a=-b",
                format!("unable to parse requirement: values[0][a]: Invalid value: \"-b\": {LABEL_VALUE_REGEX}"),
            ),
            (
                "-a=b",
                format!("unable to parse requirement: <nil>: Invalid value: \"-a\": {NAME_PART_REGEX}"),
            ),
            (
                "Foo.com/a=b",
                "unable to parse requirement: <nil>: Invalid value: \"Foo.com/a\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                    .to_string(),
            ),
            (
                "/a",
                "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty"
                    .to_string(),
            ),
            (
                // Two failures for one value are joined by "; ".
                &format!("a={}-", "x".repeat(63)),
                format!(
                    "unable to parse requirement: values[0][a]: Invalid value: \"{}-\": must be no more than 63 characters; {LABEL_VALUE_REGEX}",
                    "x".repeat(63)
                ),
            ),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input);
            assert!(matches!(err, SelectorError::LabelSyntax(_)), "{input:?}");
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn label_matching_semantics() {
        let web = json!({"metadata": {"labels": {"app": "web", "tier": "front", "n": "5"}}});
        let bare = json!({"metadata": {"name": "x"}});
        let cases = [
            ("app=web", true, false),
            ("app==web", true, false),
            ("app=db", false, false),
            // != and notin match objects without the label; in and = do not.
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("app notin (db,cache)", true, true),
            ("app notin (web)", false, true),
            ("app in (web,db)", true, false),
            ("app in (db)", false, false),
            ("app", true, false),
            ("!app", false, true),
            ("app,!missing", true, false),
            ("app=web,tier=back", false, false),
            ("n>4", true, false),
            ("n>5", false, false),
            ("n<6", true, false),
            ("tier>1", false, false),
            ("", true, true),
        ];
        for (sel, want_web, want_bare) in cases {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!(s.matches_object(&web), want_web, "{sel:?} on web");
            assert_eq!(s.matches_object(&bare), want_bare, "{sel:?} on bare");
        }
        // The closure form.
        let s = LabelSelector::parse("a=1").unwrap();
        assert!(s.matches(|k| (k == "a").then_some("1")));
        assert!(!s.matches(|_| None));
    }

    #[test]
    fn label_from_object() {
        let ok = [
            (json!({}), ""),
            (json!({"matchLabels": null, "matchExpressions": []}), ""),
            (
                json!({"matchLabels": {"app": "web", "a": "1"}}),
                "a=1,app=web",
            ),
            (
                json!({"matchExpressions": [
                    {"key": "z", "operator": "In", "values": ["y", "x"]},
                    {"key": "b", "operator": "NotIn", "values": ["q"]},
                    {"key": "c", "operator": "Exists"},
                    {"key": "d", "operator": "DoesNotExist", "values": []},
                ]}),
                "b notin (q),c,!d,z in (x,y)",
            ),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "app", "operator": "Exists"}]}),
                "app=web,app",
            ),
        ];
        for (input, want) in ok {
            let sel = LabelSelector::from_object(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(sel.to_string(), want, "{input}");
        }

        let empty = LabelSelector::from_object(&json!({})).unwrap();
        assert!(empty.is_empty());
        assert!(empty.matches_object(&json!({})));
        let none = LabelSelector::from_object(&Value::Null).unwrap();
        assert!(!none.is_empty());
        assert!(!none.matches_object(&json!({"metadata": {"labels": {"a": "b"}}})));

        let sel = LabelSelector::from_object(&json!({"matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "app", "operator": "Exists"},
        ]}))
        .unwrap();
        assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "x"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {"labels": {"app": "x", "env": "prod"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {"labels": {"env": "dev"}}})));

        let errs = [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}),
                "\"Equals\" is not a valid label selector operator".to_string(),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["b"]}]}),
                "\"in\" is not a valid label selector operator".to_string(),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty".to_string(),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty".to_string(),
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]}),
                "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for exists and does not exist".to_string(),
            ),
            (
                json!({"matchLabels": {"a": "-x"}}),
                format!("values[0][a]: Invalid value: \"-x\": {LABEL_VALUE_REGEX}"),
            ),
            (
                json!({"matchLabels": {"a/b/c": "x"}}),
                "key: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_string(),
            ),
            (
                // Several failures in one requirement are aggregated.
                json!({"matchExpressions": [{"key": "", "operator": "In"}]}),
                format!(
                    "[key: Invalid value: \"\": name part must be non-empty; {NAME_PART_REGEX}, values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty]"
                ),
            ),
            (json!("app=web"), "label selector must be an object, got string".to_string()),
        ];
        for (input, want) in errs {
            let err = LabelSelector::from_object(&input).expect_err(&input.to_string());
            assert_eq!(err.to_string(), want, "{input}");
        }
    }

    #[test]
    fn label_requires_exact_match() {
        let s = LabelSelector::parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
        assert_eq!(s.requires_exact_match("a"), Some("1"));
        assert_eq!(s.requires_exact_match("b"), Some("2"));
        assert_eq!(s.requires_exact_match("c"), None);
        assert_eq!(s.requires_exact_match("d"), None);
        assert_eq!(s.requirements().len(), 4);
        assert_eq!(s.requirements()[2].operator(), Operator::In);
        assert_eq!(s.requirements()[2].values(), ["3", "4"]);
    }

    #[test]
    fn field_parse_and_string() {
        let cases = [
            ("", ""),
            (",", ""),
            ("metadata.name=foo", "metadata.name=foo"),
            ("metadata.name==foo", "metadata.name=foo"),
            (
                "status.phase!=Running,metadata.name=a",
                "metadata.name=a,status.phase!=Running",
            ),
            ("metadata.name=a\\,b", "metadata.name=a\\,b"),
            ("metadata.name=a\\=b\\\\", "metadata.name=a\\=b\\\\"),
            ("spec.nodeName=", "spec.nodeName="),
        ];
        for (input, want) in cases {
            let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), want, "{input:?}");
            assert_eq!(sel.is_empty(), want.is_empty(), "{input:?}");
        }
        let sel = FieldSelector::parse("metadata.name=a\\,b,spec.nodeName!=n1").unwrap();
        assert_eq!(
            sel.terms(),
            [
                FieldTerm {
                    field: "metadata.name".into(),
                    negated: false,
                    value: "a,b".into()
                },
                FieldTerm {
                    field: "spec.nodeName".into(),
                    negated: true,
                    value: "n1".into()
                },
            ]
        );
        assert_eq!(sel.requires_exact_match("metadata.name"), Some("a,b"));
        assert_eq!(sel.requires_exact_match("spec.nodeName"), None);
        // The field is not trimmed.
        let spaced = FieldSelector::parse("metadata.name =x").unwrap();
        assert_eq!(spaced.terms()[0].field, "metadata.name ");
    }

    #[test]
    fn field_parse_errors() {
        let cases = [
            ("foo", "invalid selector: 'foo'; can't understand 'foo'"),
            (
                "a=b,foo",
                "invalid selector: 'a=b,foo'; can't understand 'foo'",
            ),
            (
                "a=b=c",
                "invalid field selector: unescapedRune character in value: 61",
            ),
            (
                "a!==b",
                "invalid field selector: unescapedRune character in value: 61",
            ),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b\\x",
                "invalid field selector: invalid escape sequence: \\x",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
        ];
        for (input, want) in cases {
            let err = FieldSelector::parse(input).expect_err(input);
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn field_validate_per_resource() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("", "pods", "spec.nodeName=n", None),
            ("", "pods", "status.podIPs=1.2.3.4", None),
            ("", "pods", "spec.host=n", None),
            (
                "",
                "pods",
                "spec.foo=x",
                Some("field label not supported: spec.foo"),
            ),
            (
                "",
                "events",
                "involvedObject.name=x,source=kubelet,type=Warning",
                None,
            ),
            (
                "",
                "events",
                "regarding.name=x",
                Some("field label not supported: regarding.name"),
            ),
            (
                "events.k8s.io",
                "events",
                "regarding.kind=Pod,reportingController=k,source=s",
                None,
            ),
            (
                "events.k8s.io",
                "events",
                "involvedObject.kind=Pod",
                Some("field label not supported: involvedObject.kind"),
            ),
            ("", "nodes", "spec.unschedulable=true,metadata.name=n", None),
            (
                "",
                "nodes",
                "metadata.namespace=x",
                Some("field label not supported: metadata.namespace"),
            ),
            ("", "namespaces", "status.phase=Active", None),
            ("", "secrets", "type=Opaque,metadata.namespace=d", None),
            (
                "",
                "secrets",
                "data.x=y",
                Some("field label not supported: data.x"),
            ),
            (
                "",
                "services",
                "spec.type=ClusterIP,spec.clusterIP=None",
                None,
            ),
            ("batch", "jobs", "status.successful=1", None),
            (
                "batch",
                "jobs",
                "status.failed=1",
                Some("field label \"status.failed\" not supported for batchv1.Job"),
            ),
            (
                "",
                "configmaps",
                "metadata.name=a,metadata.namespace=b",
                None,
            ),
            (
                "",
                "configmaps",
                "data.a=b",
                Some(
                    "\"data.a\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                ),
            ),
            // apps/v1 registers no conversion, so status.replicas is refused (kubernetes#135136).
            (
                "apps",
                "replicasets",
                "status.replicas=0",
                Some(
                    "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                ),
            ),
            ("", "persistentvolumes", "metadata.name=pv1", None),
        ];
        for (group, plural, sel, want) in cases {
            let r = resource(group, plural);
            let got = FieldSelector::parse(sel).unwrap().validate_for(r);
            match want {
                None => assert_eq!(got, Ok(()), "{plural} {sel}"),
                Some(msg) => {
                    let err = got.expect_err(sel);
                    assert!(matches!(err, SelectorError::UnsupportedField { .. }));
                    assert_eq!(err.to_string(), *msg, "{plural} {sel}");
                }
            }
        }
    }

    #[test]
    fn field_matching() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "serviceAccount": "old"},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
        });
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        let secret =
            json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls"});
        let core_event = json!({
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "involvedObject": {"kind": "Pod", "name": "p1", "uid": "u1"},
            "reason": "Started", "type": "Normal", "reportingComponent": "kubelet",
            "source": {}
        });
        let new_event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e2", "namespace": "d"},
            "regarding": {"kind": "Node", "name": "n1"},
            "reason": "Ready", "type": "Warning", "reportingController": "node-controller"
        });
        let job = json!({"metadata": {"name": "j"}, "status": {"succeeded": 2}});
        let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
        let cases: &[(&str, &str, &Value, &str, bool)] = &[
            ("", "pods", &pod, "spec.nodeName=n1", true),
            ("", "pods", &pod, "spec.host=n1", true),
            ("", "pods", &pod, "spec.nodeName=n2", false),
            ("", "pods", &pod, "status.phase!=Running", false),
            (
                "",
                "pods",
                &pod,
                "status.phase!=Pending,spec.restartPolicy=Always",
                true,
            ),
            ("", "pods", &pod, "spec.hostNetwork=false", true),
            ("", "pods", &pod, "spec.serviceAccountName=old", true),
            ("", "pods", &pod, "status.podIP=10.0.0.1", true),
            ("", "pods", &pod, "status.podIPs=10.0.0.1", false),
            ("", "pods", &pod, "status.podIPs=", true),
            ("", "pods", &pod, "status.nominatedNodeName=", true),
            (
                "",
                "pods",
                &pod,
                "metadata.name=p1,metadata.namespace=default",
                true,
            ),
            ("", "pods", &pod, "metadata.namespace!=default", false),
            ("", "nodes", &node, "spec.unschedulable=true", true),
            (
                "",
                "nodes",
                &json!({"metadata": {"name": "n2"}}),
                "spec.unschedulable=false",
                true,
            ),
            ("", "secrets", &secret, "type=kubernetes.io/tls", true),
            ("", "secrets", &secret, "type=Opaque", false),
            (
                "",
                "events",
                &core_event,
                "involvedObject.kind=Pod,involvedObject.name=p1",
                true,
            ),
            (
                "",
                "events",
                &core_event,
                "involvedObject.uid=u1,reason=Started,type=Normal",
                true,
            ),
            // source falls back to the reporting controller.
            (
                "",
                "events",
                &core_event,
                "source=kubelet,reportingComponent=kubelet",
                true,
            ),
            ("", "events", &core_event, "involvedObject.namespace=", true),
            (
                "events.k8s.io",
                "events",
                &new_event,
                "regarding.kind=Node,regarding.name=n1",
                true,
            ),
            (
                "events.k8s.io",
                "events",
                &new_event,
                "reportingController=node-controller",
                true,
            ),
            (
                "events.k8s.io",
                "events",
                &new_event,
                "source=node-controller,type=Warning",
                true,
            ),
            // A core request over an object stored in the events.k8s.io shape.
            (
                "",
                "events",
                &new_event,
                "involvedObject.kind=Node,reason=Ready",
                true,
            ),
            ("batch", "jobs", &job, "status.successful=2", true),
            (
                "batch",
                "jobs",
                &json!({"metadata": {"name": "j"}}),
                "status.successful=0",
                true,
            ),
            (
                "",
                "namespaces",
                &ns,
                "status.phase=Active,metadata.name=kube-system",
                true,
            ),
            (
                "",
                "services",
                &json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.5"}}),
                "spec.type=NodePort,spec.clusterIP=10.96.0.5",
                true,
            ),
            (
                "",
                "configmaps",
                &json!({"metadata": {"name": "a,b"}}),
                "metadata.name=a\\,b",
                true,
            ),
            (
                "",
                "configmaps",
                &json!({"metadata": {"name": "c"}}),
                "",
                true,
            ),
        ];
        for (group, plural, obj, sel, want) in cases {
            let r = resource(group, plural);
            let s = FieldSelector::parse(sel).unwrap();
            assert_eq!(s.validate_for(r), Ok(()), "{plural} {sel}");
            assert_eq!(s.matches(r, obj), *want, "{plural} {sel}");
        }
    }

    #[test]
    fn field_value_rendering() {
        let pods = resource("", "pods");
        let pod = json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true}});
        assert_eq!(
            field_value(pods, &pod, "spec.hostNetwork").as_deref(),
            Some("true")
        );
        assert_eq!(field_value(pods, &pod, "status.phase").as_deref(), Some(""));
        assert_eq!(field_value(pods, &pod, "spec.foo"), None);
        let nodes = resource("", "nodes");
        assert_eq!(
            field_value(nodes, &json!({}), "spec.unschedulable").as_deref(),
            Some("false")
        );
        let pvs = resource("", "persistentvolumes");
        let pv = json!({"metadata": {"name": "pv", "namespace": "stray"}});
        assert_eq!(
            field_value(pvs, &pv, "metadata.namespace").as_deref(),
            Some("")
        );
        assert_eq!(
            field_value(pvs, &pv, "metadata.name").as_deref(),
            Some("pv")
        );
    }
}
