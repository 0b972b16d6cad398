//! OpenAPI v3 schemas of the `api` types for CustomResourceDefinitions: generated
//! with schemars, then made structural (as the API server requires) and shaped
//! like Knative's own CRDs. Pure: types in, JSON out.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use kube_core::schema::{OptionalEnum, OptionalIntOrString, StructuralSchemaRewriter};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use crate::error::KubeError;

/// Whether the API server may drop fields the schema does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Keep them (`x-kubernetes-preserve-unknown-fields` on every object with
    /// properties): for `spec`, so cebus sees what the user wrote and reports an
    /// unknown or misspelt field in the object's status, as file mode reports it,
    /// instead of the API server dropping it silently. Knative's own CRDs do this
    /// for Trigger `spec` and `delivery` for the same reason.
    Preserve,
    /// Prune them: for `status`, which only cebus writes.
    Prune,
}

/// The structural schema of `T`, ready for a CRD version's `openAPIV3Schema`.
pub fn structural<T: JsonSchema>(unknown: Unknown) -> Result<JSONSchemaProps, KubeError> {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            // Structural schemas have no `$ref`: every subschema is written out.
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(OptionalEnum)
        .with_transform(OptionalIntOrString)
        .with_transform(StructuralSchemaRewriter)
        .into_generator();
    let mut value = generator.into_root_schema_for::<T>().to_value();
    shape(&mut value, unknown);
    serde_json::from_value(value).map_err(|source| KubeError::Schema {
        type_name: T::schema_name().into_owned(),
        source,
    })
}

/// Rewrites a generated schema in place into the form the CRDs use: no
/// definitions or titles; recursive references (the only `$ref`s left after
/// inlining, e.g. a filter's `all`, `any` and `not`) become objects that keep
/// unknown fields, as in Knative's Trigger CRD; no `default` (the API server would
/// write defaults into stored objects, which Knative's CRDs never do: cebus applies
/// its own defaults when it reads an object); no `nullable` (a `null` is dropped by
/// the API server and read as absent, the same thing to cebus).
pub fn shape(schema: &mut Value, unknown: Unknown) {
    if let Some(root) = schema.as_object_mut() {
        for key in ["$schema", "$defs", "definitions", "components", "title"] {
            root.remove(key);
        }
    }
    shape_node(schema, unknown);
}

fn shape_node(node: &mut Value, unknown: Unknown) {
    let Some(map) = node.as_object_mut() else {
        return;
    };
    if map.contains_key("$ref") {
        let mut open = Map::new();
        if let Some(description) = map.get("description") {
            open.insert("description".into(), description.clone());
        }
        open.insert("type".into(), "object".into());
        open.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
        *map = open;
        return;
    }
    for key in ["default", "nullable", "title", "examples"] {
        map.remove(key);
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for property in properties.values_mut() {
            shape_node(property, unknown);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = map.get_mut(key) {
            shape_node(child, unknown);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(children)) = map.get_mut(key) {
            for child in children {
                shape_node(child, unknown);
            }
        }
    }
    if unknown == Unknown::Preserve && map.contains_key("properties") {
        map.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_recursive_reference_becomes_an_open_object_with_its_description() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "not": {"description": "negation", "$ref": "#/components/schemas/Filter"}
            },
            "components": {"schemas": {"Filter": {"type": "object"}}}
        });
        shape(&mut schema, Unknown::Prune);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "not": {
                        "description": "negation",
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": true
                    }
                }
            })
        );
    }

    #[test]
    fn defaults_and_nullable_are_dropped_at_every_depth() {
        let mut schema = json!({
            "type": "object",
            "default": {},
            "properties": {
                "list": {"type": "array", "default": [], "items": {"type": "string", "nullable": true}},
                "map": {"type": "object", "additionalProperties": {"type": "integer", "default": 1}}
            }
        });
        shape(&mut schema, Unknown::Prune);
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "list": {"type": "array", "items": {"type": "string"}},
                    "map": {"type": "object", "additionalProperties": {"type": "integer"}}
                }
            })
        );
    }

    #[test]
    fn preserve_marks_every_object_with_properties_and_no_map_or_scalar() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "ref": {"type": "object", "properties": {"name": {"type": "string"}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {"type": "array", "items": {"type": "object", "properties": {}}}
            }
        });
        shape(&mut schema, Unknown::Preserve);
        let keep = |v: &Value| v.get("x-kubernetes-preserve-unknown-fields").cloned();
        assert_eq!(keep(&schema), Some(json!(true)));
        assert_eq!(keep(&schema["properties"]["ref"]), Some(json!(true)));
        assert_eq!(keep(&schema["properties"]["labels"]), None);
        assert_eq!(
            keep(&schema["properties"]["items"]["items"]),
            Some(json!(true))
        );
        assert_eq!(
            keep(&schema["properties"]["ref"]["properties"]["name"]),
            None
        );
    }

    #[test]
    fn a_property_named_default_is_kept() {
        let mut schema = json!({"type": "object", "properties": {"default": {"type": "string"}}});
        shape(&mut schema, Unknown::Prune);
        assert_eq!(schema["properties"]["default"], json!({"type": "string"}));
    }
}
