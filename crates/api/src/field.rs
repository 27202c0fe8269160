//! Field errors as Kubernetes reports them: a field path, a type and a detail,
//! rendered as `spec.containers[0].name: Required value`.

use serde_json::Value;
use std::fmt;

/// The kind of a field error; each maps to one `StatusCause.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// A required field is missing.
    Required,
    /// A value is malformed.
    Invalid,
    /// A value is not one of an enumeration.
    NotSupported,
    /// A value appears twice where it must be unique.
    Duplicate,
    /// A value is not allowed here.
    Forbidden,
    /// A value is too long.
    TooLong,
    /// A list has too many items.
    TooMany,
    /// A referenced value does not exist.
    NotFound,
    /// A value has the wrong JSON type.
    TypeInvalid,
}

impl ErrorType {
    /// The `StatusCause.reason` Kubernetes uses for this type.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: ErrorType,
    /// The field path, `spec.containers[0].name`.
    pub field: String,
    /// The offending value, shown for Invalid, NotSupported, Duplicate and NotFound.
    pub value: Option<Value>,
    /// Extra explanation; for NotSupported the list of supported values.
    pub detail: String,
}

impl FieldError {
    /// A missing required field.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    /// A malformed value.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: ErrorType::Invalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }
    /// A value outside an enumeration.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self {
            kind: ErrorType::NotSupported,
            field: field.into(),
            value: Some(value.into()),
            detail,
        }
    }
    /// A value that must be unique but is not.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            kind: ErrorType::Duplicate,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }
    /// A value that is not allowed.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    /// A value that is too long.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            kind: ErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("may not be more than {max} bytes"),
        }
    }
    /// A referenced value that does not exist.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            kind: ErrorType::NotFound,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// The message without the field path, as `StatusCause.message` carries it.
    pub fn body(&self) -> String {
        let value = self.value.as_ref().map(render_value);
        let head = match self.kind {
            ErrorType::Required => "Required value".to_string(),
            ErrorType::Invalid => format!("Invalid value: {}", value.unwrap_or_default()),
            ErrorType::NotSupported => format!("Unsupported value: {}", value.unwrap_or_default()),
            ErrorType::Duplicate => format!("Duplicate value: {}", value.unwrap_or_default()),
            ErrorType::Forbidden => "Forbidden".to_string(),
            ErrorType::TooLong => "Too long".to_string(),
            ErrorType::TooMany => "Too many".to_string(),
            ErrorType::NotFound => format!("Not found: {}", value.unwrap_or_default()),
            ErrorType::TypeInvalid => format!("Invalid value: {}", value.unwrap_or_default()),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Renders a list of errors the way Kubernetes joins them into one message:
/// a single error as is, several as `[a, b]`.
pub fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_kubernetes() {
        assert_eq!(
            FieldError::required("spec.containers[0].name", "").to_string(),
            "spec.containers[0].name: Required value"
        );
        assert_eq!(
            FieldError::not_supported(
                "spec.restartPolicy",
                "Sometimes",
                &["Always", "OnFailure", "Never"]
            )
            .to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        let two = [
            FieldError::required("a", ""),
            FieldError::duplicate("b", "x"),
        ];
        assert_eq!(
            aggregate(&two),
            "[a: Required value, b: Duplicate value: \"x\"]"
        );
    }
}
