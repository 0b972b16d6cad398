//! Admission: a snapshot validated, planned and checked by the extensions, as a
//! whole or object by object ([`Admission`]), into the plan to apply and the
//! report the source hears. Pure apart from the extensions' checks.

use std::path::Path;
use std::sync::Arc;

use cebus_api::{Config, ConfigError, Located, Resource};

use super::Extension;
use super::source::{Admission, ObjectKey, ObjectState, Report, Snapshot};
use crate::plan::{Plan, PlanOptions, plan};

/// Loads, validates and plans the config at `path` (blocking; for the CLI).
pub fn load_plan(path: &Path, opts: &PlanOptions) -> Result<Plan, Vec<ConfigError>> {
    let config = cebus_api::load_path(path)?;
    plan_config(&config, opts)
}

/// Validates and plans a loaded config.
fn plan_config(config: &Config, opts: &PlanOptions) -> Result<Plan, Vec<ConfigError>> {
    let errors = cebus_api::validate(config);
    if !errors.is_empty() {
        return Err(errors);
    }
    plan(config, opts)
}

/// Runs every extension's checks; all their errors, or `Ok`.
pub fn check(plan: &Plan, extensions: &[Arc<dyn Extension>]) -> Result<(), Vec<ConfigError>> {
    let errors: Vec<ConfigError> = extensions.iter().flat_map(|e| e.check(plan)).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Validates, plans and checks `snapshot` as its [`Admission`] says: the plan to
/// apply (none when it is rejected) and what to report.
pub fn admit(
    snapshot: Snapshot,
    opts: &PlanOptions,
    extensions: &[Arc<dyn Extension>],
) -> (Option<Plan>, Report) {
    admit_with(snapshot, |config| {
        plan_config(config, opts).and_then(|plan| check(&plan, extensions).map(|()| plan))
    })
}

/// [`admit`] with the attempt (validate, plan, check) passed in.
fn admit_with(
    snapshot: Snapshot,
    attempt: impl Fn(&Config) -> Result<Plan, Vec<ConfigError>>,
) -> (Option<Plan>, Report) {
    let Snapshot {
        mut config,
        admission,
    } = snapshot;
    let objects = objects(&config);
    let mut invalid: Vec<(ObjectKey, Vec<ConfigError>)> = Vec::new();
    let mut all_errors = Vec::new();
    loop {
        let errors = match attempt(&config) {
            Ok(plan) => {
                let report = report(&objects, &invalid, true, all_errors);
                return (Some(plan), report);
            }
            Err(errors) => errors,
        };
        all_errors.extend(errors.iter().cloned());
        let owners: Vec<Option<ObjectKey>> = errors.iter().map(|e| owner(e, &objects)).collect();
        for (e, key) in errors.iter().zip(&owners) {
            if let Some(key) = key {
                match invalid.iter_mut().find(|(k, _)| k == key) {
                    Some((_, list)) => list.push(e.clone()),
                    None => invalid.push((key.clone(), vec![e.clone()])),
                }
            }
        }
        // All or nothing, or an error no object answers for: the config in
        // force stays.
        if admission == Admission::Whole || owners.iter().any(Option::is_none) {
            return (None, report(&objects, &invalid, false, all_errors));
        }
        let before = count(&config);
        retain(&mut config, |key| !invalid.iter().any(|(k, _)| k == key));
        if count(&config) == before {
            // The errors name objects that are already out: nothing left to
            // take away, so nothing can be applied safely.
            return (None, report(&objects, &invalid, false, all_errors));
        }
    }
}

/// Each object of the snapshot (once, in order) with its state.
fn report(
    objects: &[Place],
    invalid: &[(ObjectKey, Vec<ConfigError>)],
    applied: bool,
    errors: Vec<ConfigError>,
) -> Report {
    let mut states: Vec<(ObjectKey, ObjectState)> = Vec::with_capacity(objects.len());
    for place in objects {
        if states.iter().any(|(k, _)| *k == place.key) {
            continue; // a duplicate: reported once
        }
        let state = match invalid.iter().find(|(k, _)| *k == place.key) {
            Some((_, errors)) => ObjectState::Invalid(errors.clone()),
            None if applied => ObjectState::Ready,
            None => ObjectState::Held,
        };
        states.push((place.key.clone(), state));
    }
    Report {
        applied,
        errors,
        objects: states,
    }
}

/// Where one object of a config is.
#[derive(Debug)]
struct Place {
    key: ObjectKey,
    label: String,
    file: std::path::PathBuf,
    doc: usize,
}

/// The object an error belongs to: the one it names, else the one at its file
/// and document.
fn owner(e: &ConfigError, objects: &[Place]) -> Option<ObjectKey> {
    let place = match (&e.object, e.doc) {
        (Some(label), _) => objects.iter().find(|p| p.label == *label),
        (None, Some(doc)) => objects.iter().find(|p| p.file == e.file && p.doc == doc),
        (None, None) => None,
    };
    place.map(|p| p.key.clone())
}

fn place_of<T: Resource>(o: &Located<T>) -> Place {
    let meta = o.object.metadata();
    let key = ObjectKey {
        kind: T::KIND,
        namespace: meta.namespace().to_owned(),
        name: meta.name.clone(),
    };
    Place {
        label: key.label(),
        key,
        file: o.file.clone(),
        doc: o.doc,
    }
}

/// Every object of `config`, kind by kind in load order.
fn objects(config: &Config) -> Vec<Place> {
    let mut places = Vec::new();
    places.extend(config.brokers.iter().map(place_of));
    places.extend(config.triggers.iter().map(place_of));
    places.extend(config.config_maps.iter().map(place_of));
    places.extend(config.secrets.iter().map(place_of));
    places.extend(config.ping_sources.iter().map(place_of));
    places.extend(config.container_sources.iter().map(place_of));
    places.extend(config.webhook_sources.iter().map(place_of));
    places.extend(config.kafka_sources.iter().map(place_of));
    places
}

fn count(config: &Config) -> usize {
    objects(config).len()
}

/// Keeps the objects of `config` whose key `keep` accepts.
fn retain(config: &mut Config, keep: impl Fn(&ObjectKey) -> bool) {
    fn of<T: Resource>(list: &mut Vec<Located<T>>, keep: &impl Fn(&ObjectKey) -> bool) {
        list.retain(|o| keep(&place_of(o).key));
    }
    of(&mut config.brokers, &keep);
    of(&mut config.triggers, &keep);
    of(&mut config.config_maps, &keep);
    of(&mut config.secrets, &keep);
    of(&mut config.ping_sources, &keep);
    of(&mut config.container_sources, &keep);
    of(&mut config.webhook_sources, &keep);
    of(&mut config.kafka_sources, &keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PlanOptions {
        PlanOptions {
            ingress_base: "http://127.0.0.1:8080".into(),
            max_event_size: 1 << 20,
        }
    }

    fn snapshot(yaml: &str, admission: Admission) -> Snapshot {
        let objects = cebus_api::load_str(Path::new("c.yaml"), yaml).expect("test YAML loads");
        Snapshot {
            config: Config::from_objects(objects),
            admission,
        }
    }

    fn broker(name: &str) -> String {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n---\n"
        )
    }

    fn trigger(name: &str, broker: &str, extra: &str) -> String {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\nspec:\n  broker: {broker}\n  subscriber:\n    uri: http://sink.example/\n{extra}---\n"
        )
    }

    /// An exact filter with an empty value: rejected by validation.
    const BAD_FILTER: &str = "  filters:\n    - exact:\n        type: ''\n";

    fn key(kind: &'static str, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: "default".into(),
            name: name.into(),
        }
    }

    /// (kind, name, state) of each object, for compact tables.
    fn states(report: &Report) -> Vec<(&'static str, String, &'static str)> {
        report
            .objects
            .iter()
            .map(|(k, s)| {
                let s = match s {
                    ObjectState::Ready => "ready",
                    ObjectState::Invalid(_) => "invalid",
                    ObjectState::Held => "held",
                };
                (k.kind, k.name.clone(), s)
            })
            .collect()
    }

    fn triggers(plan: &Plan, broker: &str) -> Vec<String> {
        plan.brokers[&format!("default/{broker}")]
            .triggers
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn valid_snapshot_applies_whole_and_every_object_is_ready() {
        for admission in [Admission::Whole, Admission::PerObject] {
            let yaml = format!("{}{}", broker("b"), trigger("t", "b", ""));
            let (plan, report) = admit(snapshot(&yaml, admission), &opts(), &[]);
            let plan = plan.expect("applied");
            assert_eq!(triggers(&plan, "b"), ["t"]);
            assert!(report.applied && report.errors.is_empty());
            assert_eq!(
                states(&report),
                [
                    ("Broker", "b".into(), "ready"),
                    ("Trigger", "t".into(), "ready")
                ]
            );
        }
    }

    #[test]
    fn whole_admission_rejects_everything_for_one_invalid_object() {
        let yaml = format!(
            "{}{}{}",
            broker("b"),
            trigger("good", "b", ""),
            trigger("bad", "b", BAD_FILTER)
        );
        let (plan, report) = admit(snapshot(&yaml, Admission::Whole), &opts(), &[]);
        assert!(plan.is_none() && !report.applied);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert_eq!(
            states(&report),
            [
                ("Broker", "b".into(), "held"),
                ("Trigger", "good".into(), "held"),
                ("Trigger", "bad".into(), "invalid"),
            ]
        );
    }

    #[test]
    fn per_object_admission_leaves_out_the_invalid_object_only() {
        let yaml = format!(
            "{}{}{}",
            broker("b"),
            trigger("good", "b", ""),
            trigger("bad", "b", BAD_FILTER)
        );
        let (plan, report) = admit(snapshot(&yaml, Admission::PerObject), &opts(), &[]);
        assert_eq!(triggers(&plan.expect("valid part applied"), "b"), ["good"]);
        assert!(report.applied);
        assert_eq!(
            states(&report),
            [
                ("Broker", "b".into(), "ready"),
                ("Trigger", "good".into(), "ready"),
                ("Trigger", "bad".into(), "invalid"),
            ]
        );
        let bad = &report.objects[2].1;
        let ObjectState::Invalid(errors) = bad else {
            panic!("bad is invalid")
        };
        assert_eq!(
            errors[0].field.as_deref(),
            Some("spec.filters[0].exact.type")
        );
    }

    #[test]
    fn per_object_admission_leaves_out_what_needs_an_invalid_object() {
        // Broker `bad` has an unknown class; its trigger then has no broker, and
        // is left out in a second round. Broker `ok` and its trigger run.
        let bad_broker = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: bad\n  annotations:\n    eventing.knative.dev/broker.class: Nope\n---\n";
        let yaml = format!(
            "{bad_broker}{}{}{}",
            trigger("orphan", "bad", ""),
            broker("ok"),
            trigger("t", "ok", "")
        );
        let (plan, report) = admit(snapshot(&yaml, Admission::PerObject), &opts(), &[]);
        let plan = plan.expect("valid part applied");
        assert_eq!(plan.brokers.keys().collect::<Vec<_>>(), ["default/ok"]);
        assert_eq!(triggers(&plan, "ok"), ["t"]);
        let invalid: Vec<_> = states(&report)
            .into_iter()
            .filter(|(_, _, s)| *s == "invalid")
            .map(|(k, n, _)| (k, n))
            .collect();
        assert_eq!(
            invalid,
            [
                ("Broker", "bad".to_owned()),
                ("Trigger", "orphan".to_owned())
            ]
        );
    }

    #[test]
    fn error_without_an_object_rejects_even_per_object() {
        let snap = snapshot(&broker("b"), Admission::PerObject);
        let (plan, report) = admit_with(snap, |_| {
            Err(vec![ConfigError::file(
                Path::new("elsewhere.yaml"),
                "broken",
            )])
        });
        assert!(plan.is_none() && !report.applied);
        assert_eq!(states(&report), [("Broker", "b".into(), "held")]);
    }

    #[test]
    fn error_found_by_file_and_document_belongs_to_that_object() {
        let yaml = format!("{}{}", broker("b"), trigger("t", "b", ""));
        let config = Config::from_objects(cebus_api::load_str(Path::new("c.yaml"), &yaml).unwrap());
        let places = objects(&config);
        let at_doc_1 = ConfigError::file(Path::new("c.yaml"), "x").with_doc(1);
        assert_eq!(owner(&at_doc_1, &places), Some(key("Trigger", "t")));
        let elsewhere = ConfigError::file(Path::new("d.yaml"), "x").with_doc(1);
        assert_eq!(owner(&elsewhere, &places), None);
        let named = ConfigError::file(Path::new("d.yaml"), "x")
            .with_object(Some("Broker default/b".into()));
        assert_eq!(owner(&named, &places), Some(key("Broker", "b")));
    }

    #[test]
    fn error_naming_an_object_already_left_out_stops_the_rounds() {
        let snap = snapshot(&broker("b"), Admission::PerObject);
        let (plan, report) = admit_with(snap, |_| {
            Err(vec![
                ConfigError::file(Path::new("c.yaml"), "always")
                    .with_object(Some("Broker default/b".into())),
            ])
        });
        assert!(plan.is_none() && !report.applied);
        assert_eq!(states(&report), [("Broker", "b".into(), "invalid")]);
    }
}
