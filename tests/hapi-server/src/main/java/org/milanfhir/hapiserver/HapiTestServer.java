package org.milanfhir.hapiserver;
public class HapiTestServer { public static void main(String[] a) {} }
