//! Applications: what a business records sessions of, declared with saaskit's resource toolkit.
//! Creating one consumes the `applications` gauge in the same transaction as the insert;
//! deleting one gives it back. Deletion is soft, so an application's recordings keep their
//! history.

use saaskit::metering::Meter;
use saaskit::resource::{Field, Resource};

/// The meter that counts a business's applications.
pub const METER: Meter<'static> = Meter::gauge("applications");

/// `/api/v1/applications` and `/api/v1/applications/{id}`: members create and rename, owners
/// and admins delete, every member (bots included) reads.
pub fn resource() -> Resource {
    Resource::new("applications", "application")
        .tag("example: applications")
        .field(
            Field::text("name").chars(1, 200).describe(
                "1 to 200 characters, without control or invisible formatting characters.",
            ),
        )
        .meter(METER)
}
