"""What passes from training to conversion to the daemon: the head folder (`heads`), the evaluation
set a conversion is calibrated and checked on (`eval_data`), the parity report (`parity`) and the
manifest entries (`manifest`). training/ and convert/ both build on this package and never import
each other; edge_ser imports none of it (it only reads the manifest)."""
