//! Overlapping stages: images of the next chunk are fetched and decoded on other threads while the
//! model embeds the current chunk, so decoding and inference keep both cores busy.

use crossbeam_channel::bounded;

/// Runs `load` over `chunks` one chunk ahead of `consume`, on a separate thread; results reach
/// `consume` in input order. Stops at the first error from `consume` and returns it.
pub fn overlapped<T, U, E>(
    chunks: impl Iterator<Item = T> + Send,
    load: impl Fn(T) -> U + Send + Sync,
    mut consume: impl FnMut(U) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    U: Send,
{
    std::thread::scope(|s| {
        let (tx, rx) = bounded::<U>(1);
        let load = &load;
        s.spawn(move || {
            for chunk in chunks {
                if tx.send(load(chunk)).is_err() {
                    break; // consumer stopped
                }
            }
        });
        for item in rx.iter() {
            consume(item)?; // dropping rx on error ends the loader at its next send
        }
        Ok(())
    })
}
