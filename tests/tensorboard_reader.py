"""Reads a run folder's TensorBoard events with TensorBoard's own reader (EventAccumulator)
and prints them as JSON: {"scalars": {tag: [[step, value], ...]},
"texts": {tag: {"plugin": name, "values": [[step, text], ...]}}}. Used by tests/watch.rs."""

import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "tensors": 0})
accumulator.Reload()
tags = accumulator.Tags()
out = {
    "scalars": {
        tag: [[e.step, e.value] for e in accumulator.Scalars(tag)] for tag in tags["scalars"]
    },
    "texts": {
        tag: {
            "plugin": accumulator.SummaryMetadata(tag).plugin_data.plugin_name,
            "values": [
                [e.step, e.tensor_proto.string_val[0].decode()] for e in accumulator.Tensors(tag)
            ],
        }
        for tag in tags["tensors"]
    },
}
print(json.dumps(out))
