# Reads TensorBoard event files with TensorBoard's own reader and prints
# their scalars, texts and plugins as JSON (for tests/tensorboard.rs).
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator, SCALARS, TENSORS
from tensorboard.util import tensor_util
acc = EventAccumulator(sys.argv[1], size_guidance={SCALARS: 0, TENSORS: 0}); acc.Reload()
tags = acc.Tags()
out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
       "texts": {t: [[e.step, [b.decode() for b in tensor_util.make_ndarray(e.tensor_proto).ravel()]] for e in acc.Tensors(t)] for t in tags["tensors"]},
       "plugins": {t: acc.SummaryMetadata(t).plugin_data.plugin_name for t in tags["tensors"]}}
print(json.dumps(out))
