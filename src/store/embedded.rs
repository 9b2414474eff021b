//! The embedded event store.
pub struct EmbeddedStore;
impl EmbeddedStore {
    pub fn open(
        _d: &std::path::Path,
    ) -> Result<std::sync::Arc<dyn super::EventStore>, super::StoreError> {
        todo!()
    }
}
