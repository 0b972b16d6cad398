//! A loaded configuration: every object with the file and document it came
//! from, by kind. Plain data, shared by loading and validation.

use std::path::{Path, PathBuf};

use crate::error::{ConfigError, object_label};
use crate::types::{
    Broker, ConfigMap, ContainerSource, KafkaSource, ObjectMeta, PingSource, Resource, Secret,
    Trigger, WebhookSource,
};

/// An object together with where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The file it came from.
    pub file: PathBuf,
    /// Its document index in the file (0-based, counting non-empty documents).
    pub doc: usize,
    /// The object.
    pub object: T,
}

impl<T: Resource> Located<T> {
    /// `Kind namespace/name`, as errors name the object.
    pub fn label(&self) -> String {
        let meta = self.object.metadata();
        object_label(T::KIND, meta.namespace(), &meta.name)
    }

    /// A [`ConfigError`] at `field` of this object: its file, document and label.
    pub fn error(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::file(&self.file, message)
            .with_doc(self.doc)
            .with_object(Some(self.label()))
            .with_field(field)
    }
}

/// One loaded document.
// Objects are built once per load and moved into `Config`; boxing would only add
// indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// `eventing.knative.dev/v1` Broker.
    Broker(Located<Broker>),
    /// `eventing.knative.dev/v1` Trigger.
    Trigger(Located<Trigger>),
    /// `v1` ConfigMap.
    ConfigMap(Located<ConfigMap>),
    /// `v1` Secret.
    Secret(Located<Secret>),
    /// `sources.knative.dev/v1` PingSource.
    PingSource(Located<PingSource>),
    /// `sources.knative.dev/v1` ContainerSource.
    ContainerSource(Located<ContainerSource>),
    /// `sources.cebus.dev/v1alpha1` WebhookSource.
    WebhookSource(Located<WebhookSource>),
    /// `sources.knative.dev/v1` (or `v1beta1`) KafkaSource.
    KafkaSource(Located<KafkaSource>),
}

/// Calls `$body` with `$o` bound to the `Located<_>` of any variant.
macro_rules! each_object {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            Object::Broker($o) => $body,
            Object::Trigger($o) => $body,
            Object::ConfigMap($o) => $body,
            Object::Secret($o) => $body,
            Object::PingSource($o) => $body,
            Object::ContainerSource($o) => $body,
            Object::WebhookSource($o) => $body,
            Object::KafkaSource($o) => $body,
        }
    };
}

impl Object {
    /// The object's `kind`.
    pub fn kind(&self) -> &'static str {
        fn kind_of<T: Resource>(_: &Located<T>) -> &'static str {
            T::KIND
        }
        each_object!(self, o => kind_of(o))
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        each_object!(self, o => o.object.metadata())
    }

    /// The file the object came from.
    pub fn file(&self) -> &Path {
        each_object!(self, o => &o.file)
    }

    /// The object's document index in its file.
    pub fn doc(&self) -> usize {
        each_object!(self, o => o.doc)
    }
}

/// Everything loaded, by kind, in load order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Brokers.
    pub brokers: Vec<Located<Broker>>,
    /// Triggers.
    pub triggers: Vec<Located<Trigger>>,
    /// ConfigMaps.
    pub config_maps: Vec<Located<ConfigMap>>,
    /// Secrets.
    pub secrets: Vec<Located<Secret>>,
    /// PingSources.
    pub ping_sources: Vec<Located<PingSource>>,
    /// ContainerSources.
    pub container_sources: Vec<Located<ContainerSource>>,
    /// WebhookSources.
    pub webhook_sources: Vec<Located<WebhookSource>>,
    /// KafkaSources.
    pub kafka_sources: Vec<Located<KafkaSource>>,
}

impl Config {
    /// Collects objects into a config, keeping their order.
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut config = Config::default();
        for object in objects {
            config.push(object);
        }
        config
    }

    /// Adds one object.
    pub fn push(&mut self, object: Object) {
        match object {
            Object::Broker(o) => self.brokers.push(o),
            Object::Trigger(o) => self.triggers.push(o),
            Object::ConfigMap(o) => self.config_maps.push(o),
            Object::Secret(o) => self.secrets.push(o),
            Object::PingSource(o) => self.ping_sources.push(o),
            Object::ContainerSource(o) => self.container_sources.push(o),
            Object::WebhookSource(o) => self.webhook_sources.push(o),
            Object::KafkaSource(o) => self.kafka_sources.push(o),
        }
    }

    /// The Secret `namespace/name`, if loaded.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Located<Secret>> {
        find(&self.secrets, namespace, name)
    }

    /// The broker `namespace/name`, if loaded.
    pub fn broker(&self, namespace: &str, name: &str) -> Option<&Located<Broker>> {
        find(&self.brokers, namespace, name)
    }

    /// The ConfigMap `namespace/name`, if loaded.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&Located<ConfigMap>> {
        find(&self.config_maps, namespace, name)
    }

    /// The triggers of broker `namespace/broker`.
    pub fn triggers_of<'a>(
        &'a self,
        namespace: &'a str,
        broker: &'a str,
    ) -> impl Iterator<Item = &'a Located<Trigger>> + 'a {
        self.triggers.iter().filter(move |t| {
            t.object.metadata.namespace() == namespace && t.object.spec.broker == broker
        })
    }
}

fn find<'a, T: Resource>(
    items: &'a [Located<T>],
    namespace: &str,
    name: &str,
) -> Option<&'a Located<T>> {
    items.iter().find(|o| {
        let meta = o.object.metadata();
        meta.namespace() == namespace && meta.name == name
    })
}
