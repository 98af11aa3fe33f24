//! The network's registry of approved message templates.
//!
//! A template is known by namespace, name and language code, and takes a
//! fixed number of parameters. A `template` or `hsm` message must name a
//! registered template and fill exactly its parameters; the inspection API
//! fills the registry (`POST /sim/templates`). It is shared by every account:
//! the namespace is the business's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardgate_core::upstream::protocol::UpstreamError;

/// One approved template, as `POST /sim/templates` takes it and `GET` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRecord {
    /// The business's template namespace.
    pub namespace: String,
    /// The template's name (an `hsm`'s `element_name`).
    pub name: String,
    /// The language code, such as `en` or `en_US`.
    pub language: String,
    /// How many parameters it takes, over all its components.
    #[serde(default)]
    pub params: usize,
}

/// What a message asks of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateUse {
    /// The namespace named.
    pub namespace: String,
    /// The name named.
    pub name: String,
    /// The language code named.
    pub language: String,
    /// The parameters given.
    pub params: usize,
}

type Key = (String, String, String);

/// The registry.
#[derive(Debug, Clone, Default)]
pub struct TemplateRegistry {
    templates: BTreeMap<Key, usize>,
}

impl TemplateRegistry {
    /// Registers `template`, replacing one of the same namespace, name and language.
    pub fn register(&mut self, template: TemplateRecord) {
        self.templates.insert((template.namespace, template.name, template.language), template.params);
    }

    /// Forgets a template; returns whether it was registered.
    pub fn remove(&mut self, namespace: &str, name: &str, language: &str) -> bool {
        self.templates.remove(&(namespace.to_owned(), name.to_owned(), language.to_owned())).is_some()
    }

    /// Every registered template, sorted by namespace, name and language.
    pub fn list(&self) -> Vec<TemplateRecord> {
        self.templates
            .iter()
            .map(|((namespace, name, language), &params)| TemplateRecord {
                namespace: namespace.clone(),
                name: name.clone(),
                language: language.clone(),
                params,
            })
            .collect()
    }

    /// The failure of a message that uses a template this way, if any: 2001
    /// when no such template exists in that language, 2000 when the
    /// parameter count differs.
    pub fn require(&self, used: &TemplateUse) -> Result<(), UpstreamError> {
        let key = (used.namespace.clone(), used.name.clone(), used.language.clone());
        let Some(&expected) = self.templates.get(&key) else {
            return Err(UpstreamError {
                code: 2001,
                title: "Template Missing".into(),
                details: Some(format!("no template {}:{} in language {:?}", used.namespace, used.name, used.language)),
            });
        };
        if expected != used.params {
            return Err(UpstreamError {
                code: 2000,
                title: "Template Param Count Mismatch".into(),
                details: Some(format!(
                    "template {}:{} takes {expected} parameter(s), the message gives {}",
                    used.namespace, used.name, used.params
                )),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(language: &str, params: usize) -> TemplateRecord {
        TemplateRecord { namespace: "ns".into(), name: "order_ready".into(), language: language.into(), params }
    }

    fn used(language: &str, params: usize) -> TemplateUse {
        TemplateUse { namespace: "ns".into(), name: "order_ready".into(), language: language.into(), params }
    }

    #[test]
    fn a_registered_template_with_its_parameter_count_passes() {
        let mut registry = TemplateRegistry::default();
        registry.register(record("en_US", 2));
        assert_eq!(registry.require(&used("en_US", 2)), Ok(()));
    }

    #[test]
    fn an_unknown_name_or_language_is_template_missing() {
        let mut registry = TemplateRegistry::default();
        registry.register(record("en_US", 2));
        assert_eq!(registry.require(&used("pt_BR", 2)).unwrap_err().code, 2001);
        let other = TemplateUse { name: "other".into(), ..used("en_US", 2) };
        assert_eq!(registry.require(&other).unwrap_err().code, 2001);
    }

    #[test]
    fn a_wrong_parameter_count_is_a_mismatch() {
        let mut registry = TemplateRegistry::default();
        registry.register(record("en", 1));
        let error = registry.require(&used("en", 3)).unwrap_err();
        assert_eq!((error.code, error.title.as_str()), (2000, "Template Param Count Mismatch"));
    }

    #[test]
    fn registering_again_replaces_and_remove_forgets() {
        let mut registry = TemplateRegistry::default();
        registry.register(record("en", 1));
        registry.register(record("en", 2));
        assert_eq!(registry.list(), vec![record("en", 2)]);
        assert!(registry.remove("ns", "order_ready", "en"));
        assert!(registry.list().is_empty());
    }
}
