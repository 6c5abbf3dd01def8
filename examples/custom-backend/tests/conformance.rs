//! The same conformance suite the in-tree backends run, on the downstream toy backend.

use std::sync::Arc;

use keychain::Backend;
use keychain_example_custom_backend::ToyBackend;

async fn toy() -> Arc<dyn Backend> {
    Arc::new(ToyBackend::new())
}

keychain_testkit::conformance!(toy_backend, toy);
