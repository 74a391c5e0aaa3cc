//! The `plugins` entity schema; each bundled plugin contributes a subschema
//! (its `config`, its `protocols`, its scope restrictions).

use super::engine::{Field, Record, Subschemas};
use super::typedefs::{self, HTTP_PROTOCOLS, PROTOCOLS};
use serde_json::json;

pub(crate) fn schema() -> Record {
    Record::new(vec![
        typedefs::id(),
        Field::string("name").required(),
        typedefs::utf8_name("instance_name"),
        typedefs::timestamp("created_at"),
        typedefs::timestamp("updated_at"),
        Field::foreign("route", "routes"),
        Field::foreign("service", "services"),
        Field::foreign("consumer", "consumers"),
        Field::record("config", Record::default()),
        typedefs::protocols(&PROTOCOLS, &HTTP_PROTOCOLS),
        Field::boolean("enabled").required().default(json!(true)),
        typedefs::tags(),
    ])
    .subschemas(Subschemas {
        key: "name",
        select: crate::plugin::subschema,
        unknown: |name| {
            format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property")
        },
    })
}
