"""The yum layer: fetch and parse the metadata of real yum repositories, safely."""
