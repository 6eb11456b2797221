"""kombu's Redis transport with reliable fetch (in-flight lists, heartbeats): ``broker_transport``."""
