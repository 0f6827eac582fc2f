//! The refnet.v1 gRPC contract, generated from `proto/refnet/v1` at build time.
//!
//! Everything on the wire is defined there; this crate only re-exports the
//! generated code, the encoded descriptor set (for server reflection) and a
//! [`prost_reflect::DescriptorPool`] from which the per-field sensitivity
//! options are read.

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// Generated code of the `refnet.v1` package.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("refnet.v1");
}

/// The walk over messages that redaction is built on.
///
/// `build.rs` implements [`redact::Redact`] for every `refnet.v1` message from
/// the sensitivity options in the protos; the redactor in `refnet-core` is a
/// [`redact::Visitor`].
pub mod redact {
    use crate::v1::{FieldShape, Redaction, Sensitivity};

    /// What the contract says about one field.
    #[derive(Debug)]
    pub struct FieldInfo {
        /// The proto field name.
        pub name: &'static str,
        /// Its sensitivity class.
        pub class: Sensitivity,
        /// Whether its content is free text to scan.
        pub free_text: bool,
        /// Its shape, for MASK and GENERALISE.
        pub shape: FieldShape,
    }

    /// Receives every field of a message, by kind, and may change it.
    pub trait Visitor {
        /// A string field.
        fn string(&mut self, field: &'static FieldInfo, value: &mut String);
        /// A repeated string field.
        fn strings(&mut self, field: &'static FieldInfo, value: &mut Vec<String>);
        /// An enum field.
        fn enumeration(&mut self, field: &'static FieldInfo, value: &mut i32);
        /// A repeated enum field.
        fn enumerations(&mut self, field: &'static FieldInfo, value: &mut Vec<i32>);
        /// A bool field.
        fn boolean(&mut self, field: &'static FieldInfo, value: &mut bool);
        /// A double field.
        fn double(&mut self, field: &'static FieldInfo, value: &mut f64);
        /// An int64 field.
        fn int64(&mut self, field: &'static FieldInfo, value: &mut i64);
        /// An int32 field.
        fn int32(&mut self, field: &'static FieldInfo, value: &mut i32);
        /// A well-known message the redactor treats as one value (timestamps).
        fn opaque<T>(&mut self, field: &'static FieldInfo, value: &mut Option<T>);
        /// A refnet message field.
        fn message<M: Redact>(&mut self, field: &'static FieldInfo, value: &mut Option<M>);
        /// A repeated refnet message field.
        fn messages<M: Redact>(&mut self, field: &'static FieldInfo, value: &mut Vec<M>);
    }

    /// A message whose fields a [`Visitor`] can walk (generated for every refnet.v1 message).
    pub trait Redact {
        /// Hands every field to `v`.
        fn redact<V: Visitor>(&mut self, v: &mut V);
        /// Whether any free-text field (here or in a nested message) is
        /// non-empty: such a reply can only be redacted with its subject's
        /// identifiers, so the boundary refuses it without one.
        fn holds_free_text(&self) -> bool;
        /// The reply's list of redactions, for messages that carry one.
        fn redactions_mut(&mut self) -> Option<&mut Vec<Redaction>> {
            None
        }
    }

    #[allow(missing_docs, clippy::all)]
    mod generated {
        use super::{FieldInfo, Redact, Visitor};
        use crate::v1::*;
        include!(concat!(env!("OUT_DIR"), "/refnet_redact.rs"));
    }
}

/// The encoded `FileDescriptorSet` of the contract (including imports).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("refnet_descriptor");

/// The fully qualified names of the gRPC services refnet serves.
pub const SERVICE_NAMES: [&str; 5] = [
    "refnet.v1.IntakeService",
    "refnet.v1.RoutingService",
    "refnet.v1.WitnessProtectionService",
    "refnet.v1.AuditService",
    "refnet.v1.StatisticsService",
];

/// The descriptor pool of the contract, decoded once.
///
/// # Panics
/// Never in practice: the descriptor set is produced by this crate's build
/// script from the same sources and is checked by this crate's tests.
#[allow(clippy::expect_used)]
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the build script's descriptor set decodes")
    })
}

/// The fields of `refnet.v1` messages in `pool` that carry no sensitivity
/// class (absent, or `SENSITIVITY_UNSPECIFIED`), by full name.
///
/// The contract's own pool must give an empty list; the crate's tests check it.
pub fn fields_without_sensitivity(pool: &DescriptorPool) -> Vec<String> {
    let Some(ext) = pool.get_extension_by_name("refnet.v1.sensitivity") else {
        return pool
            .all_messages()
            .filter(|m| m.package_name() == "refnet.v1")
            .flat_map(|m| {
                m.fields()
                    .map(|f| f.full_name().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
    };
    let mut missing = Vec::new();
    for message in pool.all_messages() {
        if message.package_name() != "refnet.v1" {
            continue;
        }
        for field in message.fields() {
            let options = field.options();
            let class = match options.get_extension(&ext).as_ref() {
                prost_reflect::Value::EnumNumber(n) => *n,
                _ => 0,
            };
            if !options.has_extension(&ext) || class == 0 {
                missing.push(field.full_name().to_owned());
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::{descriptor_pool, fields_without_sensitivity};

    /// Every field of every refnet.v1 message must carry a sensitivity class,
    /// so that no new field can bypass redaction.
    #[test]
    fn every_field_has_a_sensitivity_class() {
        let pool = descriptor_pool();
        let fields: usize = pool
            .all_messages()
            .filter(|m| m.package_name() == "refnet.v1")
            .map(|m| m.fields().len())
            .sum();
        assert!(
            fields > 100,
            "expected the whole contract, saw {fields} fields"
        );
        let missing = fields_without_sensitivity(pool);
        assert!(
            missing.is_empty(),
            "fields without a sensitivity class: {missing:?}"
        );
    }

    /// The check must be able to fail: a contract with an unlabelled field is caught.
    #[test]
    fn an_unlabelled_field_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v1 = dir.path().join("refnet/v1");
        std::fs::create_dir_all(&v1).expect("mkdir");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
        std::fs::copy(
            root.join("refnet/v1/sensitivity.proto"),
            v1.join("sensitivity.proto"),
        )
        .expect("copy");
        std::fs::write(
            v1.join("probe.proto"),
            r#"syntax = "proto3";
package refnet.v1;
import "refnet/v1/sensitivity.proto";
message Probe {
  string labelled = 1 [(sensitivity) = SENSITIVITY_IDENTITY];
  string unlabelled = 2;
  string unspecified = 3 [(sensitivity) = SENSITIVITY_UNSPECIFIED];
}
"#,
        )
        .expect("write");
        let mut compiler = protox::Compiler::new([dir.path()]).expect("compiler");
        compiler.include_imports(true);
        compiler
            .open_file("refnet/v1/probe.proto")
            .expect("compiles");
        let pool =
            prost_reflect::DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice())
                .expect("decodes");
        assert_eq!(
            fields_without_sensitivity(&pool),
            vec![
                "refnet.v1.Probe.unlabelled".to_owned(),
                "refnet.v1.Probe.unspecified".to_owned()
            ]
        );
    }
}
