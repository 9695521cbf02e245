"""Write small .tflite flatbuffers for tests (the ``tflite`` package's generated builder functions).

``g = TfliteGraph(); x = g.add("x", [1, 8, 8, 4]); ...; g.op("CONV_2D", [x, w, b], [y], "Conv2DOptions",
padding=0, stride_w=1)``; ``g.save(path, inputs=[x], outputs=[y])``. Options are keyword fields of the
named options table (snake_case of the schema's field names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np
import tflite

_TYPES = {np.float32: 0, np.float16: 1, np.int32: 2, np.uint8: 3, np.int64: 4, np.int8: 9}
_CODES = {name: code for code, name in tflite.BUILTIN_OPCODE2NAME.items()}


def _camel(snake: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in snake.split("_"))


@dataclass
class TfliteGraph:
    tensors: list[tuple] = field(default_factory=list)  # (name, shape, type, buffer, quant)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    ops: list[tuple] = field(default_factory=list)  # (code index, inputs, outputs, options name, fields, custom)
    codes: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, shape, dtype=np.float32, data=None, quant: tuple | None = None) -> int:
        buf = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data, dtype).tobytes())
            buf = len(self.buffers) - 1
        self.tensors.append((name, list(shape), _TYPES[np.dtype(dtype).type], buf, quant))
        return len(self.tensors) - 1

    def const(self, name: str, array) -> int:
        a = np.asarray(array)
        return self.add(name, a.shape, a.dtype, a)

    def op(self, kind: str, inputs, outputs, options: str | None = None, custom: str = "",
           custom_options: bytes = b"", **fields) -> None:
        key = (kind, custom)
        if key not in self.codes:
            self.codes.append(key)
        self.ops.append((self.codes.index(key), list(inputs), list(outputs), options, fields, custom_options))

    def build(self, inputs, outputs) -> bytes:
        b = flatbuffers.Builder(1024)

        def ints(values) -> int:
            return b.CreateNumpyVector(np.asarray(values, np.int32))

        def table_vector(start, offsets) -> int:
            start(b, len(offsets))
            for off in reversed(offsets):
                b.PrependUOffsetTRelative(off)
            return b.EndVector()

        buffers = []
        for data in self.buffers:
            vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
            tflite.BufferStart(b)
            if vec is not None:
                tflite.BufferAddData(b, vec)
            buffers.append(tflite.BufferEnd(b))
        tensors = []
        for name, shape, dtype, buf, quant in self.tensors:
            name_off, shape_off = b.CreateString(name), ints(shape)
            q_off = None
            if quant is not None:
                scale = b.CreateNumpyVector(np.asarray([quant[0]], np.float32))
                zero = b.CreateNumpyVector(np.asarray([quant[1]], np.int64))
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, scale)
                tflite.QuantizationParametersAddZeroPoint(b, zero)
                q_off = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape_off)
            tflite.TensorAddType(b, dtype)
            tflite.TensorAddBuffer(b, buf)
            tflite.TensorAddName(b, name_off)
            if q_off is not None:
                tflite.TensorAddQuantization(b, q_off)
            tensors.append(tflite.TensorEnd(b))
        ops = []
        for code, ins, outs, options, fields, custom_options in self.ops:
            opt_off = None
            if options:
                extra = {}
                for k, v in fields.items():  # vectors first (flatbuffers builds children before parents)
                    if isinstance(v, list | tuple | np.ndarray):
                        extra[k] = ints(v)
                getattr(tflite, f"{options}Start")(b)
                for k, v in fields.items():
                    getattr(tflite, f"{options}Add{_camel(k)}")(b, extra.get(k, v))
                opt_off = getattr(tflite, f"{options}End")(b)
            in_off, out_off = ints(ins), ints(outs)
            custom_off = b.CreateNumpyVector(np.frombuffer(custom_options, np.uint8)) if custom_options else None
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, code)
            tflite.OperatorAddInputs(b, in_off)
            tflite.OperatorAddOutputs(b, out_off)
            if opt_off is not None:
                tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, options))
                tflite.OperatorAddBuiltinOptions(b, opt_off)
            if custom_off is not None:
                tflite.OperatorAddCustomOptions(b, custom_off)
            ops.append(tflite.OperatorEnd(b))
        codes = []
        for kind, custom in self.codes:
            custom_off = b.CreateString(custom) if custom else None
            code = _CODES[kind]
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            if custom_off is not None:
                tflite.OperatorCodeAddCustomCode(b, custom_off)
            codes.append(tflite.OperatorCodeEnd(b))
        t_vec = table_vector(tflite.SubGraphStartTensorsVector, tensors)
        o_vec = table_vector(tflite.SubGraphStartOperatorsVector, ops)
        in_vec, out_vec, sg_name = ints(inputs), ints(outputs), b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, t_vec)
        tflite.SubGraphAddInputs(b, in_vec)
        tflite.SubGraphAddOutputs(b, out_vec)
        tflite.SubGraphAddOperators(b, o_vec)
        tflite.SubGraphAddName(b, sg_name)
        subgraph = tflite.SubGraphEnd(b)
        code_vec = table_vector(tflite.ModelStartOperatorCodesVector, codes)
        sg_vec = table_vector(tflite.ModelStartSubgraphsVector, [subgraph])
        buf_vec = table_vector(tflite.ModelStartBuffersVector, buffers)
        desc = b.CreateString("workbench test model")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, code_vec)
        tflite.ModelAddSubgraphs(b, sg_vec)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, buf_vec)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def save(self, path: Path, inputs, outputs) -> Path:
        path.write_bytes(self.build(inputs, outputs))
        return path
