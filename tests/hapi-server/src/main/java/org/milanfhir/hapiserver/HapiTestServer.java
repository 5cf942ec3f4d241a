package org.milanfhir.hapiserver;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Import;

/**
 * Entry point of the test-only HAPI FHIR JPA R4 server used by milan-fhir's integration tests.
 *
 * <p>Run: {@code java -Xmx1g -jar target/hapi-test-server.jar --server.port=8080}; the FHIR base is
 * {@code http://host:port/fhir}. The database is an in-memory H2: every start is empty.
 */
@SpringBootApplication(
		excludeName = {
			// HAPI runs its own Quartz scheduler; Spring Boot's would clash with it.
			"org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration",
			"org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration",
			"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration",
			"org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration"
		})
@Import({
	// R4 FhirContext, DAOs, resource providers, JPA system provider, validation support.
	JpaR4Config.class,
	ThreadPoolFactoryConfig.class,
	// Batch2 framework (bulk export, delete-expunge and reindex jobs run on it).
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	// Subscription plumbing: the JPA layer expects these beans even with no subscriptions in use.
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
	ServerConfig.class
})
public class HapiTestServer {

	public static void main(String[] args) {
		SpringApplication.run(HapiTestServer.class, args);
	}
}
