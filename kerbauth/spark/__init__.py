"""PySpark on a Kerberized cluster from a kerbauth hub: the admin's ``kerbauth kernelspec``.

- :mod:`~kerbauth.spark.hadoop`: whether a Hadoop client configuration
  (``HADOOP_CONF_DIR``) makes its clients use Kerberos;
- :mod:`~kerbauth.spark.kernelspec`: the Jupyter kernelspec of a PySpark kernel.

Like the doctor, this is reached only from :mod:`kerbauth.cli` (and the doctor
reads :mod:`~kerbauth.spark.hadoop`); neither the hub nor the user's server
imports it.
"""
