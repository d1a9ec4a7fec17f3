// clskern_host: a C++17 inference engine's view of clskern, through embedded Python.
//
// The program owns a score volume (float32) and a label volume (uint8) in its
// own std::vector buffers. It lends them to Python as memoryviews over that
// memory (PyMemoryView_FromMemory -> numpy.frombuffer, no copy), asks
// clskern.critical_threshold for the volume's exact critical threshold, and
// lets clskern.apply_threshold write the mask `score >= threshold` straight
// into a third buffer it owns (the `out=` argument).
//
//   usage: clskern_host SCORES.f32 LABELS.u8 NZ NY NX EPSILON MASK_OUT.u8
//
// SCORES.f32 / LABELS.u8 are raw C-order volumes (z slowest). It prints
// "threshold <repr>" and "mask_voxels <count>", and writes the mask.
// Environment: CLSKERN_PYTHON=/path/to/venv/bin/python makes the embedded
// interpreter use that environment's site-packages (found via pyvenv.cfg).
//
// Thread-safety (see python_api/README.md): every call below runs with the GIL
// held. From several C++ threads, wrap each call in PyGILState_Ensure /
// PyGILState_Release; the calls then run one at a time, each already spread
// over all cores by Numba's thread pool (size: NUMBA_NUM_THREADS, or
// numba.set_num_threads, which is per calling thread).

#include <Python.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Owns one reference; throws with Python's error text on a failed call.
class Ref {
  public:
    explicit Ref(PyObject* p = nullptr) : p_(p) {
        if (!p_) throw std::runtime_error(python_error());
    }
    Ref(const Ref&) = delete;
    Ref& operator=(const Ref&) = delete;
    ~Ref() { Py_XDECREF(p_); }
    PyObject* get() const { return p_; }

    static std::string python_error() {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        std::string text = "Python error";
        if (value) {
            PyObject* s = PyObject_Str(value);
            if (s) {
                const char* c = PyUnicode_AsUTF8(s);
                if (c) text = c;
                Py_DECREF(s);
            }
        }
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return text;
    }

  private:
    PyObject* p_;
};

template <typename T>
std::vector<T> read_raw(const std::string& path, std::size_t n) {
    std::vector<T> buffer(n);
    std::ifstream f(path, std::ios::binary);
    if (!f.read(reinterpret_cast<char*>(buffer.data()), static_cast<std::streamsize>(n * sizeof(T))))
        throw std::runtime_error(path + ": cannot read " + std::to_string(n * sizeof(T)) + " bytes");
    return buffer;
}

// A NumPy array of `shape` over memory the caller owns (no copy). The array
// holds the memoryview, which points into `data`: keep `data` alive, and do
// not resize it, for as long as the array exists.
PyObject* borrow_array(PyObject* numpy, void* data, std::size_t bytes, bool writable, const char* dtype,
                       const std::vector<Py_ssize_t>& shape) {
    Ref view(PyMemoryView_FromMemory(static_cast<char*>(data), static_cast<Py_ssize_t>(bytes),
                                     writable ? PyBUF_WRITE : PyBUF_READ));
    Ref flat(PyObject_CallMethod(numpy, "frombuffer", "Os", view.get(), dtype));
    Ref dims(PyTuple_New(static_cast<Py_ssize_t>(shape.size())));
    for (std::size_t i = 0; i < shape.size(); ++i)
        PyTuple_SET_ITEM(dims.get(), i, PyLong_FromSsize_t(shape[i]));
    PyObject* array = PyObject_CallMethod(flat.get(), "reshape", "O", dims.get());
    if (!array) throw std::runtime_error(Ref::python_error());
    // Prove the zero-copy claim: the array's data pointer is our buffer.
    Ref ctypes(PyObject_GetAttrString(array, "ctypes"));
    Ref address(PyObject_GetAttrString(ctypes.get(), "data"));
    if (PyLong_AsVoidPtr(address.get()) != data) {
        Py_DECREF(array);
        throw std::runtime_error("numpy.frombuffer copied the buffer");
    }
    return array;
}

void start_python() {
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    if (const char* python = std::getenv("CLSKERN_PYTHON")) {
        PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, python);
        if (PyStatus_Exception(status)) Py_ExitStatusException(status);
    }
    PyStatus status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) Py_ExitStatusException(status);
}

int run(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s SCORES.f32 LABELS.u8 NZ NY NX EPSILON MASK_OUT.u8\n", argv[0]);
        return 2;
    }
    const std::vector<Py_ssize_t> shape = {std::atol(argv[3]), std::atol(argv[4]), std::atol(argv[5])};
    const std::size_t n = static_cast<std::size_t>(shape[0] * shape[1] * shape[2]);
    const double epsilon = std::atof(argv[6]);

    // The engine's own buffers.
    std::vector<float> scores = read_raw<float>(argv[1], n);
    std::vector<std::uint8_t> labels = read_raw<std::uint8_t>(argv[2], n);
    std::vector<std::uint8_t> mask(n, 0xFF);

    double threshold;
    {
        Ref numpy(PyImport_ImportModule("numpy"));
        Ref clskern(PyImport_ImportModule("clskern"));
        Ref s(borrow_array(numpy.get(), scores.data(), n * sizeof(float), false, "float32", shape));
        Ref y(borrow_array(numpy.get(), labels.data(), n, false, "uint8", shape));
        Ref m(borrow_array(numpy.get(), mask.data(), n, true, "uint8", shape));

        // Entry point 1: clskern.critical_threshold(scores, labels, epsilon) -> float.
        Ref t(PyObject_CallMethod(clskern.get(), "critical_threshold", "OOd", s.get(), y.get(), epsilon));
        threshold = PyFloat_AsDouble(t.get());
        if (threshold == -1.0 && PyErr_Occurred()) throw std::runtime_error(Ref::python_error());

        // Entry point 2: clskern.apply_threshold(scores, threshold, out=mask), in place.
        Ref apply(PyObject_GetAttrString(clskern.get(), "apply_threshold"));
        Ref args(Py_BuildValue("(Od)", s.get(), threshold));
        Ref kwargs(Py_BuildValue("{s:O}", "out", m.get()));
        Ref done(PyObject_Call(apply.get(), args.get(), kwargs.get()));
    }  // every Python reference to our buffers is gone here

    std::size_t on = 0;
    for (std::uint8_t v : mask) on += v;
    std::ofstream(argv[7], std::ios::binary)
        .write(reinterpret_cast<const char*>(mask.data()), static_cast<std::streamsize>(n));
    std::printf("threshold %.17g\nmask_voxels %zu\n", threshold, on);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    start_python();
    int code;
    try {
        code = run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "clskern_host: error: %s\n", e.what());
        code = 1;
    }
    if (Py_FinalizeEx() < 0) code = code ? code : 1;
    return code;
}
