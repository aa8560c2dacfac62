"""The embedded demo model: its data generator (`data`) and its builder (`python -m studio.demo.build`)."""
