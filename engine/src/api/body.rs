//! The JSON body extractor of every route that takes one: the body must be
//! JSON (`Content-Type: application/json`, at most [`super::MAX_BODY_BYTES`]),
//! and is read as the route's type. A number with a zero fraction (`60.0`)
//! is the integer it equals, as JSON and JSON Schema have it: a whole-number
//! field takes it; one above 2^63 - 1 is refused (the document's whole
//! numbers are `int64`). Every rejection is an [`ApiError`] in the one shape.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A request body of type `T`, read as described in the module doc.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(mut value) = Json::<serde_json::Value>::from_request(request, state).await?;
        whole_numbers(&mut value);
        if let Some(path) = beyond_int64(&value, String::new()) {
            let mut error = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_job_spec",
                format!("{path}: a whole number of the API is at most 2^63 - 1 (int64)"),
            );
            error.field = Some(path);
            return Err(error);
        }
        serde_path_to_error::deserialize(value)
            .map(JsonBody)
            .map_err(|e| {
                let mut error = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_job_spec",
                    format!("Failed to deserialize the JSON body into the target type: {e}"),
                );
                let path = e.path().to_string();
                if path != "." {
                    error.field = Some(path);
                }
                error
            })
    }
}

/// Every number in `value` written with a zero fraction (`3.0`, `1e3`)
/// becomes the integer it equals, where one fits in 64 bits.
pub fn whole_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
            {
                // 2^64 and -2^63 bound what u64 and i64 hold; `as` saturates, so
                // the bounds are checked first.
                if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                    *value = Value::from(f as u64);
                } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// The path of the first integer in `value` above `i64::MAX`: the API's
/// whole numbers are `int64`, as its document says.
fn beyond_int64(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_u64() && !n.is_i64() => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| beyond_int64(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            beyond_int64(v, path)
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::whole_numbers;
    use serde_json::json;

    #[test]
    fn zero_fractions_are_integers_and_other_numbers_stay() {
        let mut v = json!({"a": 60.0, "b": [1e3, -2.0, 1.5], "c": {"d": 1e30, "e": 7}, "f": -0.0});
        whole_numbers(&mut v);
        assert_eq!(
            v,
            json!({"a": 60, "b": [1000, -2, 1.5], "c": {"d": 1e30, "e": 7}, "f": 0})
        );
        assert!(v["a"].is_u64() && v["b"][1].is_i64());
        let big = json!({"a": [1, {"b": 9_223_372_036_854_775_808_u64}]});
        assert_eq!(
            super::beyond_int64(&big, String::new()).as_deref(),
            Some("a[1].b")
        );
        assert_eq!(
            super::beyond_int64(&json!({"a": i64::MAX}), String::new()),
            None
        );
    }
}
