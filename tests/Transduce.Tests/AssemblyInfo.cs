// libtorch's RNG (manual_seed) and the live-tensor counter are process-wide; tests that train or count
// tensors must not interleave, and two cores gain little from parallel torch tests anyway.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
