//! Decoding Kubernetes protobuf request bodies into JSON.
//!
//! client-go's typed clients (and so `kubectl create configmap`, `kubectl
//! autoscale`, `kubectl drain`'s evictions, …) send request bodies as
//! `application/vnd.kubernetes.protobuf` and never fall back to JSON. skiff
//! stores and serves JSON, so [`decode`] turns such a body into the JSON a
//! JSON client would have sent for the same object.
//!
//! # Layout
//! - [`decode`]: the `k8s\0` magic and the `runtime.Unknown` envelope.
//! - the message decoder: wire format → JSON, driven by the generated field
//!   table in `proto_schema` (tag numbers and types from k8s-pb, see
//!   `tools/gen-proto-schema.py`).
//! - JSON names: proto field names are snake_case as prost writes them; the
//!   JSON name is the property of the served JSON schema (the catalogue's
//!   schemars definitions) that is equal ignoring case and punctuation
//!   (`pod_ip` → `podIP`). Embedded Go structs (`json:",inline"`, such as
//!   `Probe`'s `ProbeHandler` or `SecretKeySelector`'s
//!   `LocalObjectReference`) are fields in proto and flattened in JSON.
//! - types whose JSON form differs from their proto form: `Quantity`,
//!   `IntOrString`, `Time`, `MicroTime`, `Duration`, `RawExtension`,
//!   `FieldsV1` and `Verbs`.

use crate::proto_schema::MESSAGES;
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::LazyLock;

/// The four bytes every Kubernetes protobuf object starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// How deeply messages may nest before the body is refused.
const MAX_DEPTH: usize = 64;

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1";
const VERBS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Verbs";
const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const PVC_SPEC: &str = "io.k8s.api.core.v1.PersistentVolumeClaimSpec";
const META_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The body does not start with `k8s\0`.
    #[error(
        "the body is not a Kubernetes protobuf object: it does not start with the \"k8s\\x00\" prefix"
    )]
    Magic,
    /// The data ends inside a field.
    #[error("truncated protobuf data in {context}")]
    Truncated {
        /// The message being read.
        context: String,
    },
    /// The bytes are not valid protobuf.
    #[error("malformed protobuf data in {context}: {reason}")]
    Malformed {
        /// The message or field being read.
        context: String,
        /// What is wrong.
        reason: String,
    },
    /// The envelope names no kind.
    #[error("the protobuf object has no apiVersion and kind")]
    MissingKind,
    /// No message is known for the envelope's kind.
    #[error("no protobuf schema is known for kind {kind:?} in {api_version:?}")]
    UnknownKind {
        /// `typeMeta.apiVersion`.
        api_version: String,
        /// `typeMeta.kind`.
        kind: String,
    },
    /// The envelope's content encoding is not supported.
    #[error("unsupported protobuf content encoding {0:?}")]
    ContentEncoding(String),
    /// The envelope's content type is neither protobuf nor JSON.
    #[error("unsupported content type {0:?} inside the protobuf envelope")]
    ContentType(String),
    /// An embedded JSON document (`RawExtension`, `FieldsV1`) is invalid.
    #[error("invalid embedded JSON in {context}: {source}")]
    EmbeddedJson {
        /// The field.
        context: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Messages nest deeper than any Kubernetes object does.
    #[error("protobuf messages nest more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// The type of a field, as the generated table records it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `string`.
    String,
    /// `bytes`: base64 in JSON.
    Bytes,
    /// `bool`.
    Bool,
    /// `int32` (varint; negatives are ten-byte two's complement).
    Int32,
    /// `int64`.
    Int64,
    /// A message, by OpenAPI definition name.
    Message(&'static str),
    /// A map with string keys and values of this kind (repeated entries
    /// `{key = 1, value = 2}` on the wire).
    Map(&'static Kind),
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    /// The tag number.
    pub tag: u32,
    /// The field name as prost writes it (snake_case).
    pub name: &'static str,
    /// The type.
    pub kind: Kind,
    /// Whether the field is `repeated`.
    pub repeated: bool,
}

/// Decodes a Kubernetes protobuf-encoded object (the `k8s\0` magic + runtime.Unknown envelope) into its JSON form.
///
/// The result carries `apiVersion` and `kind` from the envelope, then the
/// object's fields as a JSON client sends them. Fields absent on the wire
/// stay absent.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtoError::Magic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_type = String::new();
    let mut reader = Reader::new(rest, "runtime.Unknown");
    while let Some((tag, wire)) = reader.key()? {
        match (tag, wire) {
            (1, WIRE_LEN) => {
                let mut tm = Reader::new(reader.len_delimited()?, "runtime.TypeMeta");
                while let Some((tag, wire)) = tm.key()? {
                    match (tag, wire) {
                        (1, WIRE_LEN) => api_version = tm.string()?,
                        (2, WIRE_LEN) => kind = tm.string()?,
                        _ => tm.skip(wire)?,
                    }
                }
            }
            (2, WIRE_LEN) => raw = reader.len_delimited()?,
            (3, WIRE_LEN) => {
                let encoding = reader.string()?;
                if !encoding.is_empty() {
                    return Err(ProtoError::ContentEncoding(encoding));
                }
            }
            (4, WIRE_LEN) => content_type = reader.string()?,
            _ => reader.skip(wire)?,
        }
    }
    if kind.is_empty() {
        return Err(ProtoError::MissingKind);
    }
    let fields = match content_type.as_str() {
        "" | CONTENT_TYPE => {
            let message =
                message_for(&api_version, &kind).ok_or_else(|| ProtoError::UnknownKind {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                })?;
            decode_object(message, raw, None, 0)?
        }
        "application/json" => match parse_json(raw, "runtime.Unknown.raw")? {
            Value::Object(map) => map,
            _ => {
                return Err(ProtoError::Malformed {
                    context: "runtime.Unknown.raw".into(),
                    reason: "the embedded JSON is not an object".into(),
                });
            }
        },
        other => return Err(ProtoError::ContentType(other.to_string())),
    };
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    for (k, v) in fields {
        object.entry(k).or_insert(v);
    }
    Ok(Value::Object(object))
}

/// The message for an apiVersion and kind: the group's package first, then
/// the meta/v1 kinds every group version registers (`DeleteOptions`, …).
fn message_for(api_version: &str, kind: &str) -> Option<&'static str> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "core",
        g => g.strip_suffix(".k8s.io").unwrap_or(g),
    };
    let candidates = [
        format!("io.k8s.api.{package}.{version}.{kind}"),
        format!("{META_V1}.{kind}"),
    ];
    candidates
        .iter()
        .find_map(|name| lookup(name).map(|(name, _)| name))
}

/// A message's fields by its definition name.
fn lookup(name: &str) -> Option<(&'static str, &'static [Field])> {
    MESSAGES
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| MESSAGES[i])
}

/// Property names of a definition, keyed by their normalised form.
type Props = HashMap<String, String>;

/// Every schema definition's properties, from the served JSON schemas.
static PROPERTIES: LazyLock<HashMap<String, Props>> = LazyLock::new(|| {
    use k8s_openapi::api as k;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.transforms.clear();
            s.meta_schema = None;
        })
        .into_generator();
    for r in skiff_api::catalog::RESOURCES {
        (r.schema)(&mut generator);
    }
    generator.subschema_for::<k::autoscaling::v1::Scale>();
    generator.subschema_for::<k::core::v1::Binding>();
    generator.subschema_for::<k::policy::v1::Eviction>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Status>();
    generator
        .take_definitions(false)
        .into_iter()
        .map(|(name, schema)| {
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().map(|k| (normalise(k), k.clone())).collect())
                .unwrap_or_default();
            (name, props)
        })
        .collect()
});

/// Lowercase with everything but letters and digits removed: the form in
/// which prost's and JSON's names of a field are equal.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `pod_ip` → `podIp`: the JSON name of a field the schema does not have.
fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a field goes in the JSON object.
enum Target {
    /// Under this property name.
    Key(String),
    /// Flattened into the enclosing object (an embedded Go struct).
    Inline,
}

/// The JSON target of a field of a message whose JSON properties are `props`.
fn target(field: &Field, props: Option<&Props>) -> Target {
    let Some(props) = props else {
        return Target::Key(lower_camel(field.name));
    };
    let norm = normalise(field.name);
    if let Some(json) = props.get(&norm) {
        return Target::Key(json.clone());
    }
    // Embedded structs are named after their type in proto (`handler` for
    // ProbeHandler, `local_object_reference`, `volume_source`, …) and their
    // fields are the enclosing object's properties in JSON.
    if let (Kind::Message(message), false) = (field.kind, field.repeated) {
        let short = message.rsplit('.').next().unwrap_or(message);
        let embedded = lookup(message)
            .is_some_and(|(_, inner)| inner.iter().any(|f| props.contains_key(&normalise(f.name))));
        if embedded && normalise(short).ends_with(&norm) {
            return Target::Inline;
        }
    }
    Target::Key(lower_camel(field.name))
}

/// Decodes a message into a JSON object. `naming` is the property set of
/// the object this message is embedded in, for messages without their own
/// schema definition.
fn decode_object(
    message: &'static str,
    bytes: &[u8],
    naming: Option<&Props>,
    depth: usize,
) -> Result<Map<String, Value>, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    let Some((_, fields)) = lookup(message) else {
        return Err(ProtoError::Malformed {
            context: message.into(),
            reason: "the message is missing from the schema table".into(),
        });
    };
    let props = PROPERTIES.get(message).or(naming);
    let mut out = Map::new();
    let mut reader = Reader::new(bytes, message);
    while let Some((tag, wire)) = reader.key()? {
        let Some(field) = fields.iter().find(|f| f.tag == tag) else {
            reader.skip(wire)?;
            continue;
        };
        let context = || format!("{message}.{}", field.name);
        let place = target(field, props);
        if let Target::Inline = place {
            let Kind::Message(inner) = field.kind else {
                unreachable!("only message fields are inlined")
            };
            expect_wire(wire, WIRE_LEN, &context)?;
            let bytes = reader.len_delimited()?;
            for (k, v) in decode_object(inner, bytes, props, depth + 1)? {
                out.insert(k, v);
            }
            continue;
        }
        let Target::Key(key) = place else {
            unreachable!()
        };
        match field.kind {
            Kind::Map(value_kind) => {
                expect_wire(wire, WIRE_LEN, &context)?;
                let (k, v) =
                    decode_map_entry(value_kind, reader.len_delimited()?, &context, depth)?;
                let entry = out.entry(key).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = entry {
                    map.insert(k, v);
                }
            }
            kind if field.repeated => {
                let entry = out.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = entry else {
                    unreachable!("repeated fields are arrays")
                };
                let packed =
                    wire == WIRE_LEN && matches!(kind, Kind::Bool | Kind::Int32 | Kind::Int64);
                if packed {
                    let mut inner = Reader::new(reader.len_delimited()?, message);
                    while !inner.done() {
                        items.push(decode_value(
                            kind,
                            WIRE_VARINT,
                            &mut inner,
                            &context,
                            depth,
                        )?);
                    }
                } else {
                    items.push(decode_value(kind, wire, &mut reader, &context, depth)?);
                }
            }
            kind => {
                let value = decode_value(kind, wire, &mut reader, &context, depth)?;
                if unset_in_go(message, field, &value) {
                    continue;
                }
                out.insert(key, value);
            }
        }
    }
    Ok(out)
}

/// Whether a decoded scalar means "unset" to Kubernetes, and so is left out
/// as a JSON client leaves it out.
///
/// Go's encoder writes every non-pointer field, set or not: kubectl's
/// Deployment carries `protocol: ""`, `dnsPolicy: ""`, `generation: 0`, ….
/// The apiserver cannot tell those from absent fields either, and defaults
/// them alike. Empty strings are dropped everywhere (the one `*string` whose
/// empty value means something, a claim's `storageClassName: ""`, is kept),
/// and all zero values of ObjectMeta (whose scalars are non-pointers but for
/// `deletionGracePeriodSeconds`). Other zero numbers and `false` stay: for a
/// pointer field (`replicas`, `backoffLimit`, `gracePeriodSeconds`,
/// `runAsUser`) they are meaningful, and the wire does not say which fields
/// are pointers.
fn unset_in_go(message: &str, field: &Field, value: &Value) -> bool {
    match value {
        Value::String(s) if s.is_empty() => {
            !(message == PVC_SPEC && field.name == "storage_class_name")
        }
        _ => {
            message == OBJECT_META
                && field.name != "deletion_grace_period_seconds"
                && is_zero(value)
        }
    }
}

/// Whether a scalar is its type's zero value.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// Decodes one `{key = 1, value = 2}` map entry.
fn decode_map_entry(
    kind: &Kind,
    bytes: &[u8],
    context: &dyn Fn() -> String,
    depth: usize,
) -> Result<(String, Value), ProtoError> {
    let mut reader = Reader::new(bytes, "map entry");
    let mut key = String::new();
    let mut value = None;
    while let Some((tag, wire)) = reader.key()? {
        match tag {
            1 => {
                expect_wire(wire, WIRE_LEN, context)?;
                key = reader.string()?;
            }
            2 => value = Some(decode_value(*kind, wire, &mut reader, context, depth)?),
            _ => reader.skip(wire)?,
        }
    }
    let value = match value {
        Some(v) => v,
        // An absent value is the type's zero value.
        None => match kind {
            Kind::String | Kind::Bytes => Value::String(String::new()),
            Kind::Bool => Value::Bool(false),
            Kind::Int32 | Kind::Int64 => Value::from(0),
            Kind::Message(m) => message_value(m, &[], depth + 1)?,
            Kind::Map(_) => Value::Object(Map::new()),
        },
    };
    Ok((key, value))
}

/// Decodes one value of a (non-map) kind.
fn decode_value(
    kind: Kind,
    wire: u8,
    reader: &mut Reader<'_>,
    context: &dyn Fn() -> String,
    depth: usize,
) -> Result<Value, ProtoError> {
    Ok(match kind {
        Kind::String => {
            expect_wire(wire, WIRE_LEN, context)?;
            let bytes = reader.len_delimited()?;
            Value::String(utf8(bytes, context)?)
        }
        Kind::Bytes => {
            expect_wire(wire, WIRE_LEN, context)?;
            let bytes = reader.len_delimited()?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Kind::Bool => {
            expect_wire(wire, WIRE_VARINT, context)?;
            Value::Bool(reader.varint()? != 0)
        }
        Kind::Int32 => {
            expect_wire(wire, WIRE_VARINT, context)?;
            // Truncation is the proto rule: negatives are sign-extended.
            Value::from(reader.varint()? as i32)
        }
        Kind::Int64 => {
            expect_wire(wire, WIRE_VARINT, context)?;
            Value::from(reader.varint()? as i64)
        }
        Kind::Message(message) => {
            expect_wire(wire, WIRE_LEN, context)?;
            message_value(message, reader.len_delimited()?, depth + 1)?
        }
        Kind::Map(_) => {
            return Err(ProtoError::Malformed {
                context: context(),
                reason: "a map nested directly in a map".into(),
            });
        }
    })
}

/// The JSON value of a message: its object, or the special JSON form of the
/// types that have one.
fn message_value(message: &'static str, bytes: &[u8], depth: usize) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    let scalars = || scalar_fields(message, bytes);
    Ok(match message {
        QUANTITY => {
            let f = scalars()?;
            Value::String(f.string(1).unwrap_or_else(|| "0".into()))
        }
        INT_OR_STRING => {
            let f = scalars()?;
            if f.int(1) == Some(1) {
                Value::String(f.string(3).unwrap_or_default())
            } else {
                Value::from(f.int(2).unwrap_or(0) as i32)
            }
        }
        TIME | MICRO_TIME => {
            // A zero time is encoded as an empty message; Go writes `null`.
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            let f = scalars()?;
            let seconds = f.int(1).unwrap_or(0);
            let nanos = f.int(2).unwrap_or(0) as i32;
            Value::String(rfc3339(seconds, nanos, message == MICRO_TIME, message)?)
        }
        DURATION => Value::String(go_duration(scalars()?.int(1).unwrap_or(0))),
        RAW_EXTENSION | FIELDS_V1 => {
            let f = scalars()?;
            match f.bytes(1) {
                None => Value::Null,
                Some([]) => Value::Null,
                Some(raw) if raw.starts_with(MAGIC) => decode(raw)?,
                Some(raw) => parse_json(raw, message)?,
            }
        }
        VERBS => {
            let f = scalars()?;
            Value::Array(
                f.all(1)
                    .map(|b| utf8(b, &|| message.to_string()).map(Value::String))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => Value::Object(decode_object(message, bytes, None, depth)?),
    })
}

/// The raw fields of a small message, for the special types.
struct Scalars<'a> {
    fields: Vec<(u32, Scalar<'a>)>,
}

enum Scalar<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn scalar_fields<'a>(message: &'static str, bytes: &'a [u8]) -> Result<Scalars<'a>, ProtoError> {
    let mut reader = Reader::new(bytes, message);
    let mut fields = Vec::new();
    while let Some((tag, wire)) = reader.key()? {
        match wire {
            WIRE_VARINT => fields.push((tag, Scalar::Varint(reader.varint()?))),
            WIRE_LEN => fields.push((tag, Scalar::Bytes(reader.len_delimited()?))),
            _ => reader.skip(wire)?,
        }
    }
    Ok(Scalars { fields })
}

impl<'a> Scalars<'a> {
    /// The last varint with this tag (the proto rule for repeated scalars).
    fn int(&self, tag: u32) -> Option<i64> {
        self.fields.iter().rev().find_map(|(t, v)| match v {
            Scalar::Varint(n) if *t == tag => Some(*n as i64),
            _ => None,
        })
    }

    fn bytes(&self, tag: u32) -> Option<&'a [u8]> {
        self.all(tag).last()
    }

    fn all(&self, tag: u32) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.fields.iter().filter_map(move |(t, v)| match v {
            Scalar::Bytes(b) if *t == tag => Some(*b),
            _ => None,
        })
    }

    fn string(&self, tag: u32) -> Option<String> {
        self.bytes(tag)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// RFC 3339 in UTC, as metav1.Time (seconds) and metav1.MicroTime
/// (microseconds) write it.
fn rfc3339(seconds: i64, nanos: i32, micro: bool, context: &str) -> Result<String, ProtoError> {
    let ts = jiff::Timestamp::from_second(seconds).map_err(|e| ProtoError::Malformed {
        context: context.into(),
        reason: format!("time out of range: {e}"),
    })?;
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S");
    Ok(if micro {
        format!("{base}.{:06}Z", nanos.clamp(0, 999_999_999) / 1000)
    } else {
        format!("{base}Z")
    })
}

/// A duration in nanoseconds as Go's `time.Duration.String` writes it
/// (`1h0m0s`, `1.5s`, `300ms`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    /// `value / 10^digits` with the fraction's trailing zeros dropped.
    fn fixed(value: u64, digits: u32) -> String {
        let scale = 10u64.pow(digits);
        let frac = format!("{:0width$}", value % scale, width = digits as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{}", value / scale)
        } else {
            format!("{}.{frac}", value / scale)
        }
    }
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", fixed(u, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", fixed(u, 6))
    } else {
        let secs = u / 1_000_000_000;
        let mut s = format!("{}s", fixed(u % 60_000_000_000, 9));
        let mins = secs / 60;
        if mins > 0 {
            s = format!("{}m{s}", mins % 60);
            let hours = mins / 60;
            if hours > 0 {
                s = format!("{hours}h{s}");
            }
        }
        s
    };
    format!("{sign}{body}")
}

fn parse_json(raw: &[u8], context: &str) -> Result<Value, ProtoError> {
    serde_json::from_slice(raw).map_err(|source| ProtoError::EmbeddedJson {
        context: context.into(),
        source,
    })
}

fn utf8(bytes: &[u8], context: &dyn Fn() -> String) -> Result<String, ProtoError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtoError::Malformed {
        context: context(),
        reason: "a string is not valid UTF-8".into(),
    })
}

fn expect_wire(wire: u8, want: u8, context: &dyn Fn() -> String) -> Result<(), ProtoError> {
    if wire == want {
        Ok(())
    } else {
        Err(ProtoError::Malformed {
            context: context(),
            reason: format!("wire type {wire} where {want} was expected"),
        })
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// A cursor over protobuf wire data.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    context: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], context: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            context,
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn truncated(&self) -> ProtoError {
        ProtoError::Truncated {
            context: self.context.into(),
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> ProtoError {
        ProtoError::Malformed {
            context: self.context.into(),
            reason: reason.into(),
        }
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated())?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("a varint is longer than ten bytes"))
    }

    /// The next field's tag and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u8)>, ProtoError> {
        if self.done() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| self.malformed("tag out of range"))?;
        if tag == 0 {
            return Err(self.malformed("field number 0"));
        }
        Ok(Some((tag, (key & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.truncated())?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.truncated())?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, ProtoError> {
        let bytes = self.len_delimited()?;
        let context = self.context;
        utf8(bytes, &|| context.to_string())
    }

    fn skip(&mut self, wire: u8) -> Result<(), ProtoError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(8).map(drop),
            WIRE_LEN => self.len_delimited().map(drop),
            WIRE_FIXED32 => self.take(4).map(drop),
            other => Err(self.malformed(format!("unsupported wire type {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A hand encoder for protobuf messages.
    #[derive(Default)]
    struct Enc(Vec<u8>);

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    impl Enc {
        fn new() -> Self {
            Self::default()
        }
        fn key(&mut self, tag: u32, wire: u8) {
            varint(&mut self.0, u64::from(tag << 3 | u32::from(wire)));
        }
        /// A length-delimited field (string, bytes, message).
        fn b(mut self, tag: u32, bytes: &[u8]) -> Self {
            self.key(tag, WIRE_LEN);
            varint(&mut self.0, bytes.len() as u64);
            self.0.extend_from_slice(bytes);
            self
        }
        fn s(self, tag: u32, s: &str) -> Self {
            self.b(tag, s.as_bytes())
        }
        /// A varint field (int32, int64, bool), two's complement.
        fn i(mut self, tag: u32, v: i64) -> Self {
            self.key(tag, WIRE_VARINT);
            varint(&mut self.0, v as u64);
            self
        }
        fn m(self, tag: u32, msg: Enc) -> Self {
            self.b(tag, &msg.0)
        }
        /// A map<string, string> entry.
        fn kv(self, tag: u32, k: &str, v: &str) -> Self {
            self.m(tag, Enc::new().s(1, k).s(2, v))
        }
        /// A map<string, message> entry.
        fn km(self, tag: u32, k: &str, v: Enc) -> Self {
            self.m(tag, Enc::new().s(1, k).m(2, v))
        }
    }

    /// The `k8s\0` + runtime.Unknown envelope around an object.
    fn envelope(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
        let unknown = Enc::new()
            .m(1, Enc::new().s(1, api_version).s(2, kind))
            .m(2, raw)
            .s(3, "")
            .s(4, "");
        [MAGIC.as_slice(), &unknown.0].concat()
    }

    fn meta(name: &str) -> Enc {
        // kubectl's objects carry an empty (zero) creationTimestamp.
        Enc::new().s(1, name).m(8, Enc::new())
    }

    fn quantity(q: &str) -> Enc {
        Enc::new().s(1, q)
    }

    #[test]
    fn decodes_objects() {
        let cases: Vec<(&str, Vec<u8>, Value)> = vec![
            (
                "configmap with data",
                envelope(
                    "v1",
                    "ConfigMap",
                    Enc::new()
                        .m(1, meta("cm").s(3, "default"))
                        .kv(2, "a", "1")
                        .kv(2, "b", "")
                        .i(4, 1),
                ),
                json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "cm", "namespace": "default", "creationTimestamp": null},
                    "data": {"a": "1", "b": ""},
                    "immutable": true,
                }),
            ),
            (
                "secret with bytes data",
                envelope(
                    "v1",
                    "Secret",
                    Enc::new()
                        .m(1, meta("s"))
                        .m(2, Enc::new().s(1, "password").b(2, b"hunter2\0\xff"))
                        .s(3, "Opaque"),
                ),
                json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "s", "creationTimestamp": null},
                    "data": {"password": "aHVudGVyMgD/"},
                    "type": "Opaque",
                }),
            ),
            (
                "namespace with empty spec and status",
                envelope(
                    "v1",
                    "Namespace",
                    Enc::new()
                        .m(1, meta("ns").kv(11, "team", "a"))
                        .m(2, Enc::new())
                        .m(3, Enc::new()),
                ),
                json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "ns", "creationTimestamp": null, "labels": {"team": "a"}},
                    "spec": {},
                    "status": {},
                }),
            ),
            (
                "deployment",
                envelope("apps/v1", "Deployment", deployment()),
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "replicas": 0,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                            "spec": {
                                "containers": [{
                                    "name": "nginx",
                                    "image": "nginx:1.27",
                                    "args": ["-g", "daemon off;"],
                                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                    "env": [
                                        {"name": "MODE", "value": "prod"},
                                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                                    ],
                                    "resources": {
                                        "limits": {"cpu": "500m", "memory": "128Mi"},
                                        "requests": {"cpu": "250m"},
                                    },
                                    "livenessProbe": {
                                        "httpGet": {"path": "/healthz", "port": 8080},
                                        "periodSeconds": 10,
                                    },
                                    "envFrom": [{"configMapRef": {"name": "cm"}}],
                                }],
                                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                                "terminationGracePeriodSeconds": -1,
                            },
                        },
                        "strategy": {
                            "type": "RollingUpdate",
                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"},
                        },
                    },
                    "status": {},
                }),
            ),
            (
                "pod with times and IP names",
                envelope(
                    "v1",
                    "Pod",
                    Enc::new()
                        .m(
                            1,
                            Enc::new()
                                .s(1, "p")
                                .s(5, "6f1c-uid")
                                .s(6, "42")
                                .m(8, Enc::new().i(1, 1_795_842_000))
                                .m(
                                    17,
                                    Enc::new()
                                        .s(1, "kubectl")
                                        .s(3, "v1")
                                        .m(4, Enc::new().i(1, 1_795_842_000).i(2, 5))
                                        .s(6, "FieldsV1")
                                        .m(7, Enc::new().b(1, br#"{"f:spec":{}}"#)),
                                ),
                        )
                        .m(2, Enc::new().i(11, 0))
                        .m(
                            3,
                            Enc::new()
                                .s(5, "10.0.0.1")
                                .s(6, "10.42.0.5")
                                .m(12, Enc::new().s(1, "10.42.0.5"))
                                .m(16, Enc::new().s(1, "10.0.0.1")),
                        ),
                ),
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "name": "p",
                        "uid": "6f1c-uid",
                        "resourceVersion": "42",
                        "creationTimestamp": "2026-11-28T05:00:00Z",
                        "managedFields": [{
                            "manager": "kubectl",
                            "apiVersion": "v1",
                            "time": "2026-11-28T05:00:00Z",
                            "fieldsType": "FieldsV1",
                            "fieldsV1": {"f:spec": {}},
                        }],
                    },
                    "spec": {"hostNetwork": false},
                    "status": {
                        "hostIP": "10.0.0.1",
                        "podIP": "10.42.0.5",
                        "podIPs": [{"ip": "10.42.0.5"}],
                        "hostIPs": [{"ip": "10.0.0.1"}],
                    },
                }),
            ),
            (
                "eviction with delete options",
                envelope(
                    "policy/v1",
                    "Eviction",
                    Enc::new().m(1, Enc::new().s(1, "p").s(3, "default")).m(
                        2,
                        Enc::new()
                            .i(1, 30)
                            .m(2, Enc::new().s(1, "6f1c-uid").s(2, "42"))
                            .s(4, "Foreground")
                            .s(5, "All"),
                    ),
                ),
                json!({
                    "apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": "p", "namespace": "default"},
                    "deleteOptions": {
                        "gracePeriodSeconds": 30,
                        "preconditions": {"uid": "6f1c-uid", "resourceVersion": "42"},
                        "propagationPolicy": "Foreground",
                        "dryRun": ["All"],
                    },
                }),
            ),
            (
                "autoscaling/v2 hpa with metrics",
                envelope(
                    "autoscaling/v2",
                    "HorizontalPodAutoscaler",
                    Enc::new().m(1, meta("web")).m(
                        2,
                        Enc::new()
                            .m(1, Enc::new().s(1, "Deployment").s(2, "web").s(3, "apps/v1"))
                            .i(2, 1)
                            .i(3, 5)
                            .m(
                                4,
                                Enc::new().s(1, "Resource").m(
                                    4,
                                    Enc::new()
                                        .s(1, "cpu")
                                        .m(2, Enc::new().s(1, "Utilization").i(4, 80)),
                                ),
                            )
                            .m(
                                4,
                                Enc::new().s(1, "Resource").m(
                                    4,
                                    Enc::new().s(1, "memory").m(
                                        2,
                                        Enc::new().s(1, "AverageValue").m(3, quantity("512Mi")),
                                    ),
                                ),
                            ),
                    ),
                ),
                json!({
                    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": "web", "creationTimestamp": null},
                    "spec": {
                        "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                        "minReplicas": 1,
                        "maxReplicas": 5,
                        "metrics": [
                            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "512Mi"}}},
                        ],
                    },
                }),
            ),
            (
                "service and node acronym names",
                envelope(
                    "v1",
                    "Service",
                    Enc::new().m(
                        2,
                        Enc::new()
                            .s(3, "10.43.0.10")
                            .s(5, "192.0.2.1")
                            .s(18, "10.43.0.10")
                            .s(19, "IPv4")
                            .m(
                                1,
                                Enc::new()
                                    .s(2, "TCP")
                                    .i(3, 53)
                                    .m(4, Enc::new().i(1, 1).s(3, "dns")),
                            ),
                    ),
                ),
                json!({
                    "apiVersion": "v1", "kind": "Service",
                    "spec": {
                        "clusterIP": "10.43.0.10",
                        "externalIPs": ["192.0.2.1"],
                        "clusterIPs": ["10.43.0.10"],
                        "ipFamilies": ["IPv4"],
                        "ports": [{"protocol": "TCP", "port": 53, "targetPort": "dns"}],
                    },
                }),
            ),
            (
                "node podCIDRs",
                envelope(
                    "v1",
                    "Node",
                    Enc::new().m(
                        2,
                        Enc::new()
                            .s(1, "10.42.0.0/24")
                            .s(7, "10.42.0.0/24")
                            .s(3, "k3s://n1"),
                    ),
                ),
                json!({
                    "apiVersion": "v1", "kind": "Node",
                    "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"], "providerID": "k3s://n1"},
                }),
            ),
            (
                "delete options in a group version",
                envelope("v1", "DeleteOptions", Enc::new().i(1, 0).i(3, 0)),
                json!({
                    "apiVersion": "v1", "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "orphanDependents": false,
                }),
            ),
            (
                "event with micro time",
                envelope(
                    "events.k8s.io/v1",
                    "Event",
                    Enc::new()
                        .m(1, Enc::new().s(1, "e"))
                        .m(2, Enc::new().i(1, 1_795_842_000).i(2, 123_456_789))
                        .s(7, "Scheduled"),
                ),
                json!({
                    "apiVersion": "events.k8s.io/v1", "kind": "Event",
                    "metadata": {"name": "e"},
                    "eventTime": "2026-11-28T05:00:00.123456Z",
                    "reason": "Scheduled",
                }),
            ),
            (
                "controller revision raw extension",
                envelope(
                    "apps/v1",
                    "ControllerRevision",
                    Enc::new()
                        .m(2, Enc::new().b(1, br#"{"spec":{"replicas":2}}"#))
                        .i(3, 7),
                ),
                json!({
                    "apiVersion": "apps/v1", "kind": "ControllerRevision",
                    "data": {"spec": {"replicas": 2}},
                    "revision": 7,
                }),
            ),
            (
                "unknown fields are skipped",
                envelope(
                    "v1",
                    "Namespace",
                    Enc::new().s(99, "x").i(98, 5).m(1, meta("ns")),
                ),
                json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "ns", "creationTimestamp": null},
                }),
            ),
        ];
        for (name, body, want) in cases {
            let got = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
        }
    }

    fn deployment() -> Enc {
        let container = Enc::new()
            .s(1, "nginx")
            .s(2, "nginx:1.27")
            .s(4, "-g")
            .s(4, "daemon off;")
            .m(6, Enc::new().i(3, 80).s(4, "TCP"))
            .m(7, Enc::new().s(1, "MODE").s(2, "prod"))
            .m(
                7,
                Enc::new().s(1, "PASSWORD").m(
                    3,
                    Enc::new().m(4, Enc::new().m(1, Enc::new().s(1, "s")).s(2, "password")),
                ),
            )
            .m(
                8,
                Enc::new()
                    .km(1, "cpu", quantity("500m"))
                    .km(1, "memory", quantity("128Mi"))
                    .km(2, "cpu", quantity("250m")),
            )
            .m(
                10,
                Enc::new()
                    .m(
                        1,
                        Enc::new().m(2, Enc::new().s(1, "/healthz").m(2, Enc::new().i(2, 8080))),
                    )
                    .i(4, 10),
            )
            .m(19, Enc::new().m(2, Enc::new().m(1, Enc::new().s(1, "cm"))));
        let pod_spec = Enc::new()
            .m(
                1,
                Enc::new()
                    .s(1, "scratch")
                    .m(2, Enc::new().m(2, Enc::new().m(2, quantity("1Gi")))),
            )
            .m(2, container)
            .i(4, -1);
        Enc::new()
            .m(1, meta("web").kv(11, "app", "web"))
            .m(
                2,
                Enc::new()
                    .i(1, 0)
                    .m(2, Enc::new().kv(1, "app", "web"))
                    .m(
                        3,
                        Enc::new()
                            .m(1, Enc::new().m(8, Enc::new()).kv(11, "app", "web"))
                            .m(2, pod_spec),
                    )
                    .m(
                        4,
                        Enc::new().s(1, "RollingUpdate").m(
                            2,
                            Enc::new()
                                .m(1, Enc::new().i(1, 0).i(2, 1))
                                .m(2, Enc::new().i(1, 1).s(3, "25%")),
                        ),
                    ),
            )
            .m(3, Enc::new())
    }

    #[test]
    fn absent_fields_stay_absent() {
        // No replicas on the wire: no "replicas" key (not an invented 0).
        let body = envelope("apps/v1", "Deployment", Enc::new().m(2, Enc::new().i(7, 1)));
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"paused": true}})
        );
    }

    #[test]
    fn packed_repeated_scalars() {
        // A packed int32 list (proto3 writers pack by default).
        let mut packed = Vec::new();
        for v in [1i64, 2, 300] {
            varint(&mut packed, v as u64);
        }
        // PodSecurityContext.supplementalGroups: repeated int64, tag 4; a
        // packed run followed by an unpacked element.
        let body = envelope(
            "v1",
            "Pod",
            Enc::new().m(2, Enc::new().m(14, Enc::new().b(4, &packed).i(4, 7))),
        );
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"securityContext": {"supplementalGroups": [1, 2, 300, 7]}}})
        );
    }

    #[test]
    fn errors() {
        let good = envelope("v1", "ConfigMap", Enc::new().kv(2, "a", "1"));
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty body", vec![], "does not start with"),
            (
                "json body",
                br#"{"kind":"ConfigMap"}"#.to_vec(),
                "does not start with",
            ),
            (
                "wrong magic",
                [b"k8x\0".as_slice(), &good[4..]].concat(),
                "does not start with",
            ),
            ("truncated", good[..good.len() - 3].to_vec(), "truncated"),
            (
                "truncated varint",
                [MAGIC.as_slice(), &[0x08, 0x80]].concat(),
                "truncated",
            ),
            ("no kind", MAGIC.to_vec(), "no apiVersion and kind"),
            (
                "unknown kind",
                envelope("example.com/v1", "Widget", Enc::new()),
                "no protobuf schema is known for kind \"Widget\"",
            ),
            (
                "wrong wire type",
                envelope("v1", "ConfigMap", Enc::new().i(4, 1).i(1, 3)),
                "wire type 0 where 2 was expected",
            ),
            (
                "gzip content encoding",
                [MAGIC.as_slice(), &Enc::new().s(3, "gzip").0].concat(),
                "unsupported protobuf content encoding",
            ),
            (
                "bad embedded json",
                envelope(
                    "apps/v1",
                    "ControllerRevision",
                    Enc::new().m(2, Enc::new().b(1, b"{")),
                ),
                "invalid embedded JSON",
            ),
        ];
        for (name, body, want) in cases {
            match decode(&body) {
                Ok(v) => panic!("{name}: decoded {v}"),
                Err(e) => assert!(e.to_string().contains(want), "{name}: {e}"),
            }
        }
    }

    #[test]
    fn go_durations() {
        for (nanos, want) in [
            (0, "0s"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-5_000_000_000, "-5s"),
        ] {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn every_referenced_message_is_in_the_table() {
        for (name, fields) in MESSAGES {
            for f in *fields {
                let kind = match f.kind {
                    Kind::Map(inner) => *inner,
                    k => k,
                };
                if let Kind::Message(m) = kind {
                    assert!(lookup(m).is_some(), "{name}.{} refers to {m}", f.name);
                }
            }
        }
        assert!(MESSAGES.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }
    /// Request bodies kubectl v1.32.4 sent for `kubectl create …`, captured
    /// from the wire.
    #[test]
    fn decodes_kubectl_bodies() {
        let cases: Vec<(&str, &str, Value)> = vec![
            (
                "configmaps",
                "6b3873000a0f0a0276311209436f6e6669674d617012270a130a03636d3112001a0022002a0032003800420012060a016112013112080a0162120374776f1a002200",
                json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm1","creationTimestamp":null},"data":{"a":"1","b":"two"}}),
            ),
            (
                "secrets",
                "6b3873000a0c0a0276311206536563726574122d0a120a02733112001a0022002a0032003800420012150a0870617373776f7264120968756e7465723200ff1a001a002200",
                json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s1","creationTimestamp":null},"data":{"password":"aHVudGVyMgD/"}}),
            ),
            (
                "namespaces",
                "6b3873000a0f0a02763112094e616d657370616365121b0a130a036e733112001a0022002a0032003800420012001a020a001a002200",
                json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ns1","creationTimestamp":null},"spec":{},"status":{}}),
            ),
            (
                "deployments",
                "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412bd010a1f0a0377656212001a0022002a003200380042005a0a0a036170701203776562128b010800120c0a0a0a0361707012037765621a710a1c0a0012001a0022002a003200380042005a0a0a036170701203776562125112330a056e67696e78120a6e67696e783a312e32372a00320a0a001000185022002a0042006a007200800100880100900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200",
                json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","creationTimestamp":null,"labels":{"app":"web"}},"spec":{"replicas":0,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.27","ports":[{"hostPort":0,"containerPort":80}],"resources":{},"stdin":false,"stdinOnce":false,"tty":false}],"hostNetwork":false,"hostPID":false,"hostIPC":false}},"strategy":{},"minReadySeconds":0,"paused":false},"status":{"observedGeneration":0,"replicas":0,"updatedReplicas":0,"availableReplicas":0,"unavailableReplicas":0,"readyReplicas":0}}),
            ),
            (
                "jobs",
                "6b3873000a0f0a0862617463682f763112034a6f621284010a120a026a3112001a0022002a00320038004200126432620a100a0012001a0022002a00320038004200124e122b0a026a31120762757379626f781a05736c6565701a01352a0042006a007200800100880100900100a201001a054e65766572320042004a0052005800600068008201008a01009a0100c201001a082000280030003a001a002200",
                json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j1","creationTimestamp":null},"spec":{"template":{"metadata":{"creationTimestamp":null},"spec":{"containers":[{"name":"j1","image":"busybox","command":["sleep","5"],"resources":{},"stdin":false,"stdinOnce":false,"tty":false}],"restartPolicy":"Never","hostNetwork":false,"hostPID":false,"hostIPC":false}}},"status":{"active":0,"succeeded":0,"failed":0}}),
            ),
            (
                "services",
                "6b3873000a0d0a027631120753657276696365126c0a210a047376633112001a0022002a003200380042005a0b0a0361707012047376633112430a1b0a0738302d38303830120354435018502207080010903f1a002800120b0a036170701204737663311a002209436c757374657249503a00420052005a00600068001a020a001a002200",
                json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"svc1","creationTimestamp":null,"labels":{"app":"svc1"}},"spec":{"ports":[{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080,"nodePort":0}],"selector":{"app":"svc1"},"type":"ClusterIP","healthCheckNodePort":0,"publishNotReadyAddresses":false},"status":{"loadBalancer":{}}}),
            ),
        ];
        for (name, hex_body, want) in cases {
            let body = hex::decode(hex_body).unwrap();
            let got = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
        }
    }
}
