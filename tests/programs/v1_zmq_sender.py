#! /usr/bin/python3
'''Description: a ZeroMQ sender written the way async-nexus 1.0.2's demos are written

It sends events with pyzmq's send_json(event, default=dataclasses.asdict), as 1.0's demos and
its send_event() did, run unchanged against today's library: today's Event has a fifth field,
so each message carries "headers": null beside 1.0's four. tests/test_zmq.py runs it against
a ZmqEventReceiver.

Usage: python tests/programs/v1_zmq_sender.py tcp://127.0.0.1:PORT
'''

import dataclasses
import sys

import zmq

import async_nexus


class Kettle(async_nexus.NamedEvent):
    """A named event; its type is its class name."""


def main(address):
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.connect(address)
    socket.send_json(async_nexus.Event(1001, 99, 0, "TEAPOT!"), default=dataclasses.asdict)
    socket.send_json(async_nexus.Event(1002, "sensor.temp", 1, {"celsius": 21.5}), default=dataclasses.asdict)
    socket.send_json(Kettle(1003, "boiling"), default=dataclasses.asdict)
    socket.close()  # lingers until the messages are out, as 1.0's demos relied on
    context.term()
    print("sent 3")


if __name__ == "__main__":
    main(sys.argv[1])
